//! Explicit time bounds: every test finishes within its bound or fails saying so.

use std::future::Future;
use std::time::Duration;

/// Runs an async test body, failing the test if it takes longer than `secs` seconds.
pub async fn bounded<F: Future>(secs: u64, body: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), body)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within its {secs} s bound"))
}

/// Runs a synchronous test body on its own thread with a time bound (panics propagate).
pub fn within<T: Send + 'static>(secs: u64, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(body());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("test did not finish within its {secs} s bound")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => panic!("test body ended without a result"),
        },
    }
}
