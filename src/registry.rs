//! Live processes: every `serve` and `work` process registers itself and beats every
//! heartbeat; `GET /v1/workers` lists those whose last beat is recent
//! ([`Store::live_processes`]; the records and their keys are the store's).
//!
//! A process's entry is scored by when it expires (its last beat plus 2.5 of its own
//! heartbeats, on Redis's clock), so each process sets its own pace and a reader needs no
//! setting to tell the live from the gone: a process killed with SIGKILL drops off within
//! three heartbeats; one stopped with SIGTERM removes itself at once.

pub use crate::store::{ProcessInfo, ProcessKind};

use crate::store::Store;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

fn host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// This process's registration; [`Registration::stop`] removes it.
pub struct Registration {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Registers this process and beats every `heartbeat` until stopped.
pub fn register(
    store: Store,
    kind: ProcessKind,
    concurrency: usize,
    heartbeat: Duration,
) -> Registration {
    let pid = std::process::id();
    let host = host();
    let id = format!("{host}-{pid}-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let started_at = crate::store::now_rfc3339();
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let ttl = heartbeat * 5 / 2;
        loop {
            let ns = store.namespace();
            let info = ProcessInfo {
                id: id.clone(),
                host: host.clone(),
                pid,
                kind,
                queues: kakaopay_jobs::QUEUES
                    .iter()
                    .map(|q| q.to_string())
                    .collect(),
                concurrency,
                in_flight: kakaopay_jobs::QUEUES
                    .iter()
                    .map(|q| kakaopay_jobs::queue::in_flight(ns, q))
                    .sum(),
                started_at: started_at.clone(),
                last_seen: crate::store::now_rfc3339(),
            };
            if let Err(e) = store.beat_process(&info, ttl).await {
                tracing::warn!(error = %e, "heartbeat failed; trying again");
            }
            tokio::select! {
                _ = tokio::time::sleep(heartbeat) => {}
                _ = stopped.wait_for(|s| *s) => break,
            }
        }
        // Stopping: gone from the list at once, not after its entry expires.
        if let Err(e) = store.forget_process(&id).await {
            tracing::warn!(error = %e, "could not leave the workers list; it expires");
        }
    });
    Registration { stop, task }
}

impl Registration {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
