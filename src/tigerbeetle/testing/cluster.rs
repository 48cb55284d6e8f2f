//! A throwaway three-replica TigerBeetle cluster on 127.0.0.1 for tests: each replica is
//! formatted and started like a [`super::TbServer`] (`--development`, a scratch directory, a
//! free loopback port, the same watchdog), all started with the same `--addresses` list.
//! Two replicas up make a quorum: the cluster answers with any one of them killed.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{format_replica, free_port, spawn_replica, Running, ScratchDir, START_BOUND};
use crate::settings::TigerBeetleSettings;

/// Replicas in a [`TbCluster`].
pub const REPLICAS: usize = 3;

/// One replica: its directory, and its process while it runs.
#[derive(Debug)]
struct Replica {
    dir: ScratchDir,
    running: Mutex<Option<Running>>,
}

impl Replica {
    fn data_file(&self, index: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("0_{index}.tigerbeetle"))
    }

    fn running(&self) -> MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Three `--development` replicas of one TigerBeetle cluster on loopback ports, all stopped
/// (and their data removed) on drop. Replica `i` is `addresses()`'s `i`-th entry.
#[derive(Debug)]
pub struct TbCluster {
    cluster: u128,
    ports: Vec<u16>,
    replicas: Vec<Replica>,
}

impl TbCluster {
    /// Formats three data files of one new cluster and starts every replica; panics with the
    /// reason if it cannot.
    pub fn start() -> TbCluster {
        // Not 0 (TigerBeetle warns that it is reserved for testing), and different for each
        // cluster, so a client pointed at the wrong ports finds no cluster at all.
        let cluster = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| u128::from(d.subsec_nanos()) + 1);
        let replicas: Vec<Replica> = (0..REPLICAS)
            .map(|index| {
                let replica = Replica {
                    dir: ScratchDir::create(),
                    running: Mutex::new(None),
                };
                format_replica(cluster, index, REPLICAS, &replica.data_file(index));
                replica
            })
            .collect();
        let mut cluster = TbCluster {
            cluster,
            ports: Vec::new(),
            replicas,
        };
        let mut last_error = String::new();
        for _ in 0..5 {
            cluster.ports = (0..REPLICAS).map(|_| free_port()).collect();
            match cluster.spawn_all() {
                Ok(()) => return cluster,
                // Most likely a port was taken between probing and binding: try others.
                Err(e) => last_error = e,
            }
            for index in 0..REPLICAS {
                cluster.kill(index);
            }
        }
        panic!("the TigerBeetle cluster did not start: {last_error}");
    }

    /// The cluster id the replicas were formatted with.
    pub fn cluster(&self) -> u128 {
        self.cluster
    }

    /// `127.0.0.1:<port>` of replica `index`.
    pub fn address(&self, index: usize) -> String {
        format!("127.0.0.1:{}", self.ports[index])
    }

    /// Every replica's address, comma-separated, in replica order (what `--tb-addresses`
    /// and `tigerbeetle start --addresses` take).
    pub fn addresses(&self) -> String {
        (0..REPLICAS)
            .map(|index| self.address(index))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Backend settings for this cluster (batches within a `--development` server's 253
    /// events per request).
    pub fn config(&self) -> TigerBeetleSettings {
        TigerBeetleSettings {
            addresses: self.addresses(),
            cluster: self.cluster,
            request_timeout_ms: 5_000,
            batch_max_events: 253,
            flush_interval_us: 100,
            sessions: 1,
        }
    }

    /// Starts every replica at once (each takes seconds to open its data file).
    fn spawn_all(&self) -> Result<(), String> {
        std::thread::scope(|scope| {
            let started: Vec<_> = (0..REPLICAS)
                .map(|index| scope.spawn(move || self.spawn(index)))
                .collect();
            let mut errors = Vec::new();
            for handle in started {
                match handle.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => errors.push(e),
                    Err(_) => errors.push("a replica start panicked".to_string()),
                }
            }
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join("\n"))
            }
        })
    }

    fn spawn(&self, index: usize) -> Result<(), String> {
        let replica = &self.replicas[index];
        let running = spawn_replica(
            replica.dir.path(),
            &replica.data_file(index),
            &self.addresses(),
            &self.address(index),
        )?;
        *replica.running() = Some(running);
        Ok(())
    }

    /// Whether replica `index` runs (was started and not killed since).
    pub fn is_running(&self, index: usize) -> bool {
        self.replicas[index].running().is_some()
    }

    /// Kills replica `index` at once (SIGKILL), keeping its data file.
    pub fn kill(&self, index: usize) {
        if let Some(running) = self.replicas[index].running().take() {
            running.stop();
        }
    }

    /// Starts replica `index` again on its data file and port; panics if it cannot.
    pub fn restart(&self, index: usize) {
        self.kill(index);
        let started = Instant::now();
        loop {
            match self.spawn(index) {
                Ok(()) => return,
                Err(e) if started.elapsed() > START_BOUND => {
                    panic!("TigerBeetle replica {index} did not restart: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// The running replica that last said it became primary in the highest view, read from
    /// the replicas' logs (`transition_to_normal_... view=N primary`); `None` while no
    /// running replica says so (for example during a view change).
    pub fn primary(&self) -> Option<usize> {
        (0..REPLICAS)
            .filter(|&index| self.is_running(index))
            .filter_map(|index| {
                let log =
                    std::fs::read_to_string(self.replicas[index].dir.path().join("server.log"))
                        .unwrap_or_default();
                let last = log
                    .lines()
                    .rfind(|line| line.contains("transition_to_normal_from"))?;
                let view = last.split("view=").nth(1)?.split_whitespace().next()?;
                let view: u64 = view.rsplit("..").next()?.parse().ok()?;
                last.trim_end()
                    .ends_with("primary")
                    .then_some((view, index))
            })
            .max()
            .map(|(_, index)| index)
    }
}

impl Drop for TbCluster {
    fn drop(&mut self) {
        for index in 0..REPLICAS {
            self.kill(index);
        }
    }
}
