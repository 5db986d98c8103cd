//! The stall watch: once nothing has completed for `stall_timeout` while jobs run, it says
//! so, naming the jobs and replicas (a silent deadlock must not go unnoticed), and with
//! `on_stall = "restart"` kills the stalled jobs (per-job) or restarts the replicas holding
//! them (lease); each job's attempt is counted as `stalled` and it is retried. It says so
//! again after each further `stall_timeout` of the same stall.

use crate::reporter::{failure, Reporter};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use steward_config::{OnStall, PipelineMode};
use steward_events::{EventKind, ExitClass};
use steward_queue::{now_ms, Job, JobFilter, JobState};
use steward_supervise::Supervisor;
use tokio::sync::{watch, Notify};

/// Per-job slots' kill switches, by slot name.
pub type SlotStops = Arc<Mutex<BTreeMap<String, Arc<Notify>>>>;

pub struct StallWatch {
    pub reporter: Arc<Reporter>,
    /// This agent run's lease-owner prefix, `<run id>/`.
    pub owner_prefix: String,
    pub stops: SlotStops,
    /// Restarts lease-mode replicas.
    pub supervisor: Option<Arc<Supervisor>>,
}

impl StallWatch {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let p = self.reporter.pipeline.clone();
        let Some(window) = p.stall_timeout else {
            return;
        };
        let window_ms = window.0.as_millis().min(i64::MAX as u128) as i64;
        let mut acted_at = 0;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250).min(window.0)) => {}
                _ = steward_net::stopped(&mut shutdown) => return,
            }
            let last = self.reporter.last_completion();
            let now = now_ms();
            if now - last.max(acted_at) < window_ms {
                continue;
            }
            let running = in_flight(&self.reporter, &self.owner_prefix).await;
            if running.is_empty() {
                continue;
            }
            acted_at = now;
            let restart = p.on_stall == OnStall::Restart;
            let mut holders: Vec<String> = running.iter().map(|r| r.0.clone()).collect();
            holders.dedup();
            self.reporter.ctx.emit(
                Some(&p.name),
                EventKind::Stall {
                    pipeline: p.name.clone(),
                    idle_ms: (now - last) as u64,
                    jobs: running.iter().map(|r| r.1.id).collect(),
                    replicas: holders,
                    restarted: restart,
                },
            );
            if restart {
                self.restart_stalled(running).await;
            }
        }
    }

    async fn restart_stalled(&self, running: Vec<(String, Job)>) {
        if self.reporter.pipeline.mode == PipelineMode::PerJob {
            let stops = self.stops.lock().unwrap_or_else(|p| p.into_inner());
            for (slot, _) in &running {
                if let Some(stop) = stops.get(slot) {
                    stop.notify_waiters();
                }
            }
            return;
        }
        let mut restarted = BTreeSet::new();
        for (instance, job) in running {
            let stalled = failure(ExitClass::Stalled, &ExitClass::Stalled.to_string(), None);
            self.reporter.report(&job, Err(stalled), false).await;
            if restarted.insert(instance.clone()) {
                if let Some(sup) = self.supervisor.clone() {
                    tokio::spawn(async move {
                        if let Err(e) = sup.restart(&instance).await {
                            tracing::warn!("cannot restart {instance} after a stall: {e}");
                        }
                    });
                }
            }
        }
    }
}

/// This run's jobs in flight in the pipeline's queue: (slot or replica, job).
pub async fn in_flight(reporter: &Reporter, owner_prefix: &str) -> Vec<(String, Job)> {
    let filter = JobFilter {
        limit: Some(10_000),
        ..JobFilter::queue(&reporter.pipeline.queue).state(JobState::Running)
    };
    reporter
        .store
        .list(&filter)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|j| {
            let holder = j
                .lease_owner
                .as_deref()?
                .strip_prefix(owner_prefix)?
                .to_string();
            Some((holder, j))
        })
        .collect()
}
