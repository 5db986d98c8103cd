//! One pipeline: its queue's inputs enqueued, and (per-job mode) one task per slot
//! (replica x concurrency), each leasing a job, running it and reporting it; in lease mode
//! the workers pull the jobs and this only watches. The stall watch runs beside either.

use crate::per_job::run_one;
use crate::progress::PipelineProgress;
use crate::reporter::Reporter;
use crate::stall::{in_flight, SlotStops, StallWatch};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use steward_config::{Pipeline, PipelineMode};
use steward_plan::Instance;
use steward_queue::{
    now_ms, Counts, EnqueueSummary, FileJobs, InputKey, JobFilter, JobState, JobStore, QueueError,
};
use steward_supervise::{LogFiles, Supervisor, SupervisorContext};
use tokio::sync::{watch, Notify};

/// How long an idle slot waits before asking the queue again.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// With `until_empty`: how long every lease may fail before the run gives up (a full disk,
/// a damaged queue) instead of retrying forever.
const STUCK_AFTER: Duration = Duration::from_secs(5);
/// The same for a shared database that does not answer: it may be restarting.
const STUCK_AFTER_UNREACHABLE: Duration = Duration::from_secs(120);

/// While leases fail: how often it is said again.
const SAY_AGAIN: Duration = Duration::from_secs(30);

pub struct PipelineRunner {
    pub reporter: Arc<Reporter>,
    /// This pipeline's replicas, from the plan.
    pub instances: Vec<Instance>,
    /// This agent run's lease-owner prefix, `<run id>/`.
    pub owner_prefix: String,
    stops: SlotStops,
    supervisor: Option<Arc<Supervisor>>,
    /// Why a run until empty gave up, when it did.
    stuck: Mutex<Option<String>>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunSummary {
    pub pipeline: String,
    pub counts: Counts,
    /// Quarantined inputs and why (the last attempt's classification and error).
    pub quarantined: Vec<(String, String)>,
    /// Why the run could not go on (the queue refused every lease), when it could not.
    pub stuck: Option<String>,
}

impl PipelineRunner {
    /// `supervisor` runs the lease-mode replicas (restarted on a stall).
    pub fn new(
        ctx: Arc<SupervisorContext>,
        store: Arc<dyn JobStore>,
        pipeline: Pipeline,
        instances: Vec<Instance>,
        owner_prefix: String,
        supervisor: Option<Arc<Supervisor>>,
    ) -> Arc<Self> {
        Arc::new(PipelineRunner {
            reporter: Arc::new(Reporter::new(ctx, store, Arc::new(pipeline))),
            instances,
            owner_prefix,
            stops: Arc::default(),
            supervisor,
            stuck: Mutex::new(None),
        })
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.reporter.pipeline
    }

    fn store(&self) -> &dyn JobStore {
        self.reporter.store.as_ref()
    }

    /// Enqueues the pipeline's `inputs` (idempotent: what is queued or done is skipped).
    pub async fn enqueue_inputs(&self) -> Result<Option<EnqueueSummary>, QueueError> {
        let p = self.pipeline();
        if p.inputs.is_empty() {
            return Ok(None);
        }
        let spec = FileJobs {
            queue: &p.queue,
            paths: &p.inputs,
            glob: p.glob.as_deref(),
            key: InputKey::Content,
            max_attempts: p.max_attempts,
            priority: 0,
        };
        steward_queue::enqueue_files(self.store(), &spec, &|_, _| {})
            .await
            .map(Some)
    }

    /// Whether nothing is left to run: no job pending, retrying or running.
    pub async fn drained(&self) -> bool {
        self.store()
            .stats(Some(&self.pipeline().queue))
            .await
            .map(|s| s.counts.unfinished() == 0)
            .unwrap_or(false)
    }

    /// Runs jobs until `shutdown` turns true, or (with `until_empty`) the queue is drained.
    /// In lease mode the workers run the jobs; this only waits for the queue to drain.
    pub async fn run(self: Arc<Self>, until_empty: bool, mut shutdown: watch::Receiver<bool>) {
        let watch = StallWatch {
            reporter: self.reporter.clone(),
            owner_prefix: self.owner_prefix.clone(),
            stops: self.stops.clone(),
            supervisor: self.supervisor.clone(),
        };
        // The watch ends with this run, whether it was drained or shut down.
        let (stop_watch, watch_stopped) = watch::channel(false);
        let stall = tokio::spawn(watch.run(watch_stopped));
        if self.pipeline().mode == PipelineMode::Lease {
            loop {
                if *shutdown.borrow() || (until_empty && self.drained().await) {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        } else {
            let mut slots = tokio::task::JoinSet::new();
            for inst in &self.instances {
                for c in 0..self.pipeline().concurrency {
                    let slot = if self.pipeline().concurrency == 1 {
                        inst.name.clone()
                    } else {
                        format!("{}.{c}", inst.name)
                    };
                    let dir = self.reporter.ctx.logs_dir.join(&slot);
                    let logs = match LogFiles::open(&dir, self.pipeline().workers.log) {
                        Ok(l) => Arc::new(Mutex::new(l)),
                        Err(e) => {
                            tracing::warn!("{slot}: cannot open its log: {e}");
                            continue;
                        }
                    };
                    let (me, inst, shutdown) = (self.clone(), inst.clone(), shutdown.clone());
                    slots.spawn(async move {
                        me.slot_loop(inst, slot, logs, until_empty, shutdown).await
                    });
                }
            }
            while slots.join_next().await.is_some() {}
        }
        let _ = stop_watch.send(true);
        let _ = stall.await;
    }

    async fn slot_loop(
        &self,
        inst: Instance,
        slot: String,
        logs: Arc<Mutex<LogFiles>>,
        until_empty: bool,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let owner = format!("{}{slot}", self.owner_prefix);
        let ttl = self.pipeline().timeout.0 + Duration::from_secs(60);
        let stall = Arc::new(Notify::new());
        self.stops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(slot.clone(), stall.clone());
        // Since when every lease has failed, and when that was last said.
        let mut failing: Option<(Instant, Instant)> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let leased = self
                .store()
                .lease(&self.pipeline().queue, &owner, ttl)
                .await;
            if leased.is_ok() && failing.take().is_some() {
                tracing::info!("{slot}: leases work again");
            }
            let job = match leased {
                Ok(Some(job)) => job,
                Ok(None) => {
                    if until_empty && self.drained().await {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                Err(e) => {
                    let now = Instant::now();
                    let (since, said) = failing.get_or_insert((now, now));
                    if *since == now || now.duration_since(*said) >= SAY_AGAIN {
                        *said = now;
                        tracing::warn!(
                            "{slot}: cannot lease from queue {} (failing for {:.0?}): {e}",
                            self.pipeline().queue,
                            now.duration_since(*since)
                        );
                    }
                    let patience = match e {
                        QueueError::Database(_) => STUCK_AFTER_UNREACHABLE,
                        _ => STUCK_AFTER,
                    };
                    if until_empty && now.duration_since(*since) >= patience {
                        let why = format!(
                            "the queue refused every lease for {patience:?} ({e}). No job was lost: fix the cause (free disk space, say) and run `steward run --until-empty` again; what is done stays done"
                        );
                        *self.stuck.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            };
            run_one(&self.reporter, &inst, &slot, &logs, &stall, job).await;
        }
    }

    /// The snapshot for `progress.json`.
    pub async fn progress(&self) -> Option<PipelineProgress> {
        let p = self.pipeline();
        let stats = self.store().stats(Some(&p.queue)).await.ok()?;
        let window = p.stall_timeout.map_or(p.timeout.0 / 2, |w| w.0).as_millis() as i64;
        let now = now_ms();
        let stuck = in_flight(&self.reporter, &self.owner_prefix)
            .await
            .into_iter()
            .map(|(_, j)| j)
            .filter(|j| j.started_at.is_some_and(|t| now - t > window))
            .take(1000)
            .collect();
        Some(PipelineProgress {
            pipeline: p.name.clone(),
            queue: p.queue.clone(),
            stats,
            stuck,
            idle_seconds: Some(((now - self.reporter.last_completion()) / 1000).max(0) as u64),
        })
    }

    pub async fn summary(&self) -> RunSummary {
        let p = self.pipeline();
        let counts = self
            .store()
            .stats(Some(&p.queue))
            .await
            .map(|s| s.counts)
            .unwrap_or_default();
        let quarantined = self
            .store()
            .list(&JobFilter::queue(&p.queue).state(JobState::Quarantined))
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|j| {
                (
                    j.input().unwrap_or(&j.key).to_string(),
                    j.last_error.clone().unwrap_or_default(),
                )
            })
            .collect();
        RunSummary {
            pipeline: p.name.clone(),
            counts,
            quarantined,
            stuck: self.stuck.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}
