//! `ratelimiterd`: the rate-limit service for LLM calls. Argument parsing, settings, wiring
//! and shutdown only; everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use clap::Parser;
use log::{error, info};

use ratelimiter::actors::{
    restore_snapshot, DecreaseApplier, MemoryBackend, MemoryOptions, SaveNow, SnapshotKeeper,
};
use ratelimiter::backend::Backend;
use ratelimiter::limits_file::read_limits_file;
use ratelimiter::model::{SharedClock, SystemClock};
use ratelimiter::outage::BackendDownPolicy;
use ratelimiter::registry::Registry;
use ratelimiter::service::{LimiterService, RegistrySource};
use ratelimiter::settings::{BackendKind, Overrides, ServerSettings, ENV_PREFIX};
use ratelimiter::snapshot::SnapshotFile;

/// mimalloc instead of the system allocator: request handling allocates and frees many small
/// objects, which glibc's malloc served at ~30 % of the daemon's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The command line: `--config` plus one flag per setting.
#[derive(Debug, Parser)]
#[command(
    name = "ratelimiterd",
    version,
    about = "Rate-limit service for LLM calls: reserve before a call, complete after it",
    long_about = None,
    after_help = "Settings are layered, later wins: defaults, the YAML file given with --config, \
environment variables RATELIMITERD_<KEY> (nested keys joined with `__`, e.g. \
RATELIMITERD_RETRY__ROLLING__BASE_MS=200), then these flags. Log level: RUST_LOG (default info).\n\
Exit status: 2 for a configuration error, 1 for a runtime error (registry, port in use)."
)]
struct Cli {
    /// YAML config file (every setting; see the README's configuration reference)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
}

/// A start-up failure: a configuration problem exits 2, anything else 1.
enum Fatal {
    Config(String),
    Runtime(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if !ratelimiter::http::huge_pages::disable_transparent_huge_pages() {
        log::debug!("transparent huge pages stay as the kernel sets them");
    }
    let result = ServerSettings::load_from_env(cli.config.as_deref(), &cli.overrides)
        .map_err(|e| Fatal::Config(e.to_string()))
        .and_then(|settings| actix_rt::System::new().block_on(run(settings, cli.config)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fatal::Config(message)) => {
            eprintln!("ratelimiterd: {message}");
            ExitCode::from(2)
        }
        Err(Fatal::Runtime(message)) => {
            eprintln!("ratelimiterd: {message}");
            ExitCode::from(1)
        }
    }
}

async fn run(settings: ServerSettings, config: Option<PathBuf>) -> Result<(), Fatal> {
    match &config {
        Some(path) => info!(
            "config file {} loaded ({ENV_PREFIX}_* variables and flags override it)",
            path.display()
        ),
        None => info!("no config file; defaults, {ENV_PREFIX}_* variables and flags"),
    }
    let seed = match &settings.limits {
        Some(path) => {
            let states =
                read_limits_file(path).map_err(|e| Fatal::Config(format!("limits: {e}")))?;
            info!("limits file {}: {} limit(s)", path.display(), states.len());
            states
        }
        None => {
            info!("no limits file");
            Vec::new()
        }
    };
    let clock: SharedClock = Arc::new(SystemClock);
    let (backend, memory) = start_backend(&settings, Arc::clone(&clock)).await?;
    let registry = Registry::new(&settings.registry);
    let service = LimiterService::start(
        backend,
        RegistrySource::File(registry),
        seed,
        settings.service(),
    )
    .await
    .map_err(|e| {
        Fatal::Runtime(format!(
            "cannot start with registry {}: {e}",
            settings.registry.display()
        ))
    })?;
    match service.list().await {
        Ok(limits) => info!(
            "{} limit(s) in force on the {} backend",
            limits.len(),
            service.backend_name()
        ),
        Err(e) => {
            return Err(Fatal::Runtime(format!(
                "backend {}: {e}",
                service.backend_name()
            )))
        }
    }
    info!(
        "backend_down: {} (while the backend is down, reserves are {}; a probe checks it \
         every {} ms)",
        settings.backend_down.as_str(),
        match settings.backend_down {
            BackendDownPolicy::Deny => "answered backend_error at once",
            BackendDownPolicy::Allow => "allowed WITHOUT accounting: limits are not enforced",
        },
        settings.backend_probe_interval_ms
    );
    // The memory backend's live reservations: loaded before serving, saved periodically and
    // after the last request at a graceful stop.
    let keeper = match memory {
        Some(memory) => {
            let file = SnapshotFile::beside_registry(&settings.registry);
            restore_snapshot(&memory, &file, &clock)
                .await
                .map_err(|e| Fatal::Runtime(format!("reservation snapshot: {e}")))?;
            let every = Duration::from_millis(settings.snapshot_interval_ms);
            Some(SnapshotKeeper::new(memory, file, every, clock).start())
        }
        None => None,
    };
    // After the restore: a pending decrease must see the reservations made before the stop.
    let interval = Duration::from_millis(settings.decrease_interval_ms);
    DecreaseApplier::new(Arc::clone(&service), interval).start();

    let signals = ShutdownSignals::install()
        .map_err(|e| Fatal::Runtime(format!("cannot watch SIGINT/SIGTERM: {e}")))?;
    let bound = ratelimiter::http::bind(service, settings.http(), settings.listen.as_str())
        .map_err(|e| Fatal::Runtime(format!("cannot listen on {}: {e}", settings.listen)))?;
    info!("listening on http://{}", bound.addr);
    let handle = bound.server.handle();
    actix_rt::spawn(async move {
        let signal = signals.recv().await;
        info!("{signal} received; finishing requests in flight, then stopping");
        handle.stop(true).await;
    });
    let served = bound
        .server
        .await
        .map_err(|e| Fatal::Runtime(format!("server failed: {e}")));
    if let Some(keeper) = keeper {
        match keeper.send(SaveNow).await {
            Ok(Ok(_)) => info!("live reservations saved"),
            Ok(Err(e)) => error!("{e}; the next start will not know this run's reservations"),
            Err(e) => error!("cannot save live reservations: {e}"),
        }
    }
    served?;
    info!("ratelimiterd stopped");
    Ok(())
}

/// SIGINT and SIGTERM watchers, installed before the server announces itself so that a
/// signal sent right after start-up stops it cleanly instead of killing it.
#[cfg(unix)]
struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl ShutdownSignals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the first signal and returns its name.
    async fn recv(mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// Ctrl-C only, where Unix signals do not exist.
#[cfg(not(unix))]
struct ShutdownSignals;

#[cfg(not(unix))]
impl ShutdownSignals {
    fn install() -> std::io::Result<Self> {
        Ok(ShutdownSignals)
    }

    async fn recv(self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// Starts the configured backend; the memory backend is also returned as itself (its live
/// state is saved and restored by the binary).
async fn start_backend(
    settings: &ServerSettings,
    clock: SharedClock,
) -> Result<(Arc<dyn Backend>, Option<Arc<MemoryBackend>>), Fatal> {
    let policy = settings.retry;
    match settings.backend {
        BackendKind::Memory => {
            let options = MemoryOptions {
                lease_capacity: settings.lease_capacity,
                arbiters: settings.memory_arbiters,
                shards: settings.memory_shards,
            };
            info!(
                "memory backend: keys spread by group over {} shard(s) on {} arbiter(s)",
                settings.memory_shards, settings.memory_arbiters
            );
            let memory = MemoryBackend::start_with(clock, policy, options);
            Ok((Arc::clone(&memory) as Arc<dyn Backend>, Some(memory)))
        }
        BackendKind::Tigerbeetle => Ok((tigerbeetle_backend(settings, clock).await?, None)),
    }
}

/// The single place where `ratelimiterd` connects to TigerBeetle.
#[cfg(feature = "tigerbeetle")]
async fn tigerbeetle_backend(
    settings: &ServerSettings,
    clock: SharedClock,
) -> Result<Arc<dyn Backend>, Fatal> {
    let policy = settings.retry;
    info!(
        "connecting to TigerBeetle cluster {} at {}",
        settings.tigerbeetle.cluster, settings.tigerbeetle.addresses
    );
    // ---- TigerBeetle backend: the only call site ----
    let backend = ratelimiter::tigerbeetle::TigerBeetleBackend::connect_with_lease_capacity(
        settings.tigerbeetle.clone(),
        clock,
        policy,
        settings.lease_capacity,
    )
    .await
    .map_err(|e| {
        Fatal::Runtime(format!(
            "cannot connect to TigerBeetle at {}: {e}",
            settings.tigerbeetle.addresses
        ))
    })?;
    Ok(backend)
}

/// Without the cargo feature there is no TigerBeetle client in the binary.
#[cfg(not(feature = "tigerbeetle"))]
async fn tigerbeetle_backend(
    _: &ServerSettings,
    _: SharedClock,
) -> Result<Arc<dyn Backend>, Fatal> {
    Err(Fatal::Config(
        "backend: tigerbeetle is not available in this build; rebuild with `cargo build --release --features tigerbeetle` (or use --backend memory)".into(),
    ))
}
