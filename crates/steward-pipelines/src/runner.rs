//! The per-job runner: one task per slot (replica x concurrency), each leasing a job,
//! running it, and reporting its outcome.

use crate::progress::PipelineProgress;
use crate::quarantine::quarantine;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use steward_config::{template, OnStall, Pipeline, PipelineMode};
use steward_events::{EventKind, ExitClass};
use steward_plan::Instance;
use steward_queue::{
    now_ms, FailOutcome, Failure, InputKey, Job, JobFilter, JobState, JobStore, SqliteStore,
};
use steward_supervise::{LogFiles, Supervisor, SupervisorContext};
use tokio::sync::{watch, Notify};

/// How long an idle slot waits before asking the queue again.
const IDLE_POLL: Duration = Duration::from_millis(200);

pub struct PipelineRunner {
    // (fields are read by the lease broker too)
    pub ctx: Arc<SupervisorContext>,
    pub store: Arc<SqliteStore>,
    pub pipeline: Pipeline,
    /// This pipeline's replicas, from the plan.
    pub instances: Vec<Instance>,
    /// This agent run's lease-owner prefix, `<run id>/`.
    pub owner_prefix: String,
    pub(crate) last_completion: AtomicI64,
    /// Per-job slots: notified to kill the slot's job when the stall watchdog restarts it.
    stall_stops: Mutex<BTreeMap<String, Arc<Notify>>>,
    /// Restarts lease-mode replicas on a stall (`on_stall = "restart"`).
    supervisor: Option<Arc<Supervisor>>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunSummary {
    pub pipeline: String,
    pub counts: BTreeMap<String, u64>,
    /// Quarantined inputs and why (the last attempt's classification and error).
    pub quarantined: Vec<(String, String)>,
}

impl PipelineRunner {
    pub fn new(
        ctx: Arc<SupervisorContext>,
        store: Arc<SqliteStore>,
        pipeline: Pipeline,
        instances: Vec<Instance>,
        owner_prefix: String,
    ) -> Arc<Self> {
        Arc::new(PipelineRunner {
            ctx,
            store,
            pipeline,
            instances,
            owner_prefix,
            last_completion: AtomicI64::new(now_ms()),
            stall_stops: Mutex::new(BTreeMap::new()),
            supervisor: None,
        })
    }

    /// The supervisor that runs this pipeline's lease-mode replicas, for stall restarts.
    pub fn with_supervisor(self: Arc<Self>, supervisor: Arc<Supervisor>) -> Arc<Self> {
        match Arc::try_unwrap(self) {
            Ok(mut me) => {
                me.supervisor = Some(supervisor);
                Arc::new(me)
            }
            // Already shared: keep it as it is (no restarts; the stall is still reported).
            Err(shared) => shared,
        }
    }

    /// Enqueues the pipeline's `inputs` (idempotent: what is queued or done is skipped).
    pub fn enqueue_inputs(
        &self,
    ) -> Result<Option<steward_queue::EnqueueSummary>, steward_queue::QueueError> {
        if self.pipeline.inputs.is_empty() {
            return Ok(None);
        }
        let spec = steward_queue::FileJobs {
            queue: &self.pipeline.queue,
            paths: &self.pipeline.inputs,
            glob: self.pipeline.glob.as_deref(),
            key: InputKey::Content,
            max_attempts: self.pipeline.max_attempts,
            priority: 0,
        };
        steward_queue::enqueue_files(self.store.as_ref(), &spec, &|_, _| {}).map(Some)
    }

    /// Whether nothing is left to run: no job pending, retrying or running.
    pub fn drained(&self) -> bool {
        self.store
            .stats(Some(&self.pipeline.queue))
            .map(|s| s.counts["pending"] + s.counts["retrying"] + s.counts["running"] == 0)
            .unwrap_or(false)
    }

    /// Runs jobs until `shutdown` turns true, or (with `until_empty`) the queue is drained.
    /// In lease mode the workers run the jobs; this only waits for the queue to drain.
    pub async fn run(self: Arc<Self>, until_empty: bool, mut shutdown: watch::Receiver<bool>) {
        let watchdog = {
            let me = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move { me.stall_watchdog(shutdown).await })
        };
        if self.pipeline.mode != PipelineMode::PerJob {
            loop {
                if *shutdown.borrow() || (until_empty && self.drained()) {
                    watchdog.abort();
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        let mut slots = Vec::new();
        for inst in &self.instances {
            for c in 0..self.pipeline.concurrency {
                let slot = if self.pipeline.concurrency == 1 {
                    inst.name.clone()
                } else {
                    format!("{}.{c}", inst.name)
                };
                let logs =
                    match LogFiles::open(&self.ctx.logs_dir.join(&slot), self.pipeline.workers.log)
                    {
                        Ok(l) => Arc::new(Mutex::new(l)),
                        Err(e) => {
                            tracing::warn!("{slot}: cannot open its log: {e}");
                            continue;
                        }
                    };
                let me = self.clone();
                let (inst, shutdown) = (inst.clone(), shutdown.clone());
                slots.push(tokio::spawn(async move {
                    me.slot_loop(inst, slot, logs, until_empty, shutdown).await
                }));
            }
        }
        for s in slots {
            let _ = s.await;
        }
        watchdog.abort();
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
        let ttl = self.pipeline.timeout.0.as_millis() as i64 + 60_000;
        let stall = Arc::new(Notify::new());
        self.stall_stops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(slot.clone(), stall.clone());
        loop {
            if *shutdown.borrow() {
                return;
            }
            let leased = {
                let (store, queue, owner) = (
                    self.store.clone(),
                    self.pipeline.queue.clone(),
                    owner.clone(),
                );
                tokio::task::spawn_blocking(move || store.lease(&queue, &owner, ttl)).await
            };
            let job = match leased {
                Ok(Ok(Some(job))) => job,
                Ok(Ok(None)) => {
                    if until_empty && self.drained() {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::warn!(
                        "{slot}: cannot lease from queue {}: {e}",
                        self.pipeline.queue
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(_) => return,
            };
            self.run_one(&inst, &slot, &owner, &logs, &stall, job).await;
        }
    }

    async fn run_one(
        &self,
        inst: &Instance,
        slot: &str,
        owner: &str,
        logs: &Arc<Mutex<LogFiles>>,
        stall: &Notify,
        job: Job,
    ) {
        let p = &self.pipeline;
        let Some(input) = job.input().map(PathBuf::from) else {
            return self
                .finish(
                    owner,
                    &job,
                    Err(cannot_run("the payload has no \"input\"")),
                    true,
                )
                .await;
        };
        if p.confine_inputs {
            if let Err(why) = confined(&input, p) {
                return self.finish(owner, &job, Err(cannot_run(&why)), true).await;
            }
        }
        let vars = template::vars_for(&input, &p.output_dir, job.id, job.attempts);
        let argv: Result<Vec<String>, String> = p
            .command
            .iter()
            .map(|a| template::render(a, &vars))
            .collect();
        let expect = p
            .expect_output
            .as_deref()
            .map(|e| template::render(e, &vars))
            .transpose();
        let (argv, expect) = match (argv, expect) {
            (Ok(a), Ok(e)) => (a, e.map(PathBuf::from)),
            (Err(e), _) | (_, Err(e)) => {
                return self.finish(owner, &job, Err(cannot_run(&e)), true).await
            }
        };
        if let Err(e) = std::fs::create_dir_all(&p.output_dir) {
            let why = format!("cannot create {}: {e}", p.output_dir.display());
            return self.finish(owner, &job, Err(cannot_run(&why)), false).await;
        }
        let run = self
            .ctx
            .run_job(
                inst,
                &p.workers,
                slot,
                argv,
                steward_supervise::KillWhen {
                    timeout: p.timeout.0,
                    stall,
                },
                logs,
            )
            .await;
        let tail = Some(run.output_tail.clone()).filter(|t| !t.is_empty());
        let outcome = match (&run.class, &expect) {
            (ExitClass::Exited { code: 0 }, Some(out))
                if !std::fs::metadata(out).is_ok_and(|m| m.len() > 0) =>
            {
                Err(failure(
                    run.class.clone(),
                    &format!(
                        "exited 0 but its output {} is missing or empty",
                        out.display()
                    ),
                    tail,
                ))
            }
            (ExitClass::Exited { code: 0 }, _) => Ok(()),
            (class, _) => Err(failure(class.clone(), &class.to_string(), tail)),
        };
        self.finish(owner, &job, outcome, false).await;
    }

    /// Reports a job's outcome to the queue; quarantines its input when it is out of
    /// attempts (or `at_once`, for an input that must never run).
    pub(crate) async fn finish(
        &self,
        owner: &str,
        job: &Job,
        outcome: Result<(), Failure>,
        at_once: bool,
    ) {
        let store = self.store.clone();
        let (id, owner_s, backoff) = (job.id, owner.to_string(), self.pipeline.backoff);
        match outcome {
            Ok(()) => {
                let _ = tokio::task::spawn_blocking(move || store.complete(id, &owner_s)).await;
                self.last_completion.store(now_ms(), Ordering::Relaxed);
            }
            Err(f) => {
                let f2 = f.clone();
                let result = tokio::task::spawn_blocking(move || {
                    if at_once {
                        store.quarantine_now(id, &owner_s, f2).map(|q| {
                            if q {
                                FailOutcome::Quarantined { attempts: 0 }
                            } else {
                                FailOutcome::NotLeased
                            }
                        })
                    } else {
                        store.fail(id, &owner_s, f2, &backoff)
                    }
                })
                .await;
                let quarantined = matches!(result, Ok(Ok(FailOutcome::Quarantined { .. })));
                self.ctx.emit(
                    Some(&self.pipeline.name),
                    EventKind::JobFailed {
                        job: job.id,
                        input: job.input().unwrap_or(&job.key).to_string(),
                        attempt: job.attempts,
                        class: f.class.clone(),
                        error: f.error.clone(),
                        quarantined,
                        explain: f
                            .stderr_tail
                            .as_deref()
                            .and_then(|t| steward_explain::explain_text(t.as_bytes()).one_line()),
                    },
                );
                if quarantined {
                    self.quarantine_input(job);
                }
            }
        }
    }

    fn quarantine_input(&self, job: &Job) {
        let (Some(dir), Some(input)) = (&self.pipeline.quarantine_dir, job.input()) else {
            return;
        };
        let Ok(Some((job, attempts))) = self.store.get(job.id) else {
            return;
        };
        if let Err(e) = quarantine(
            dir,
            self.pipeline.quarantine,
            Path::new(input),
            &job,
            &attempts,
        ) {
            tracing::warn!(
                "{}: cannot quarantine {input} into {}: {e}",
                self.pipeline.name,
                dir.display()
            );
        }
    }

    /// This run's jobs in flight: (slot or replica, job), from the queue's leases.
    fn in_flight(&self) -> Vec<(String, Job)> {
        self.store
            .list(&JobFilter {
                queue: Some(self.pipeline.queue.clone()),
                state: Some(JobState::Running),
                limit: Some(10_000),
            })
            .unwrap_or_default()
            .into_iter()
            .filter_map(|j| {
                let holder = j
                    .lease_owner
                    .as_deref()?
                    .strip_prefix(&self.owner_prefix)?
                    .to_string();
                Some((holder, j))
            })
            .collect()
    }

    /// Once nothing has completed for `stall_timeout` while jobs run, says so, naming the
    /// jobs and replicas (seed 001's silent deadlock), and with `on_stall = "restart"`
    /// restarts those replicas. Says so again after each further `stall_timeout` of the
    /// same stall.
    async fn stall_watchdog(&self, mut shutdown: watch::Receiver<bool>) {
        let Some(window) = self.pipeline.stall_timeout else {
            return;
        };
        let window_ms = window.0.as_millis() as i64;
        let mut acted_at = 0;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250).min(window.0)) => {}
                _ = shutdown.changed() => return,
            }
            let last = self.last_completion.load(Ordering::Relaxed);
            let now = now_ms();
            if now - last.max(acted_at) < window_ms {
                continue;
            }
            let running = self.in_flight();
            if running.is_empty() {
                continue;
            }
            acted_at = now;
            let restart = self.pipeline.on_stall == OnStall::Restart;
            let mut holders: Vec<String> = running.iter().map(|r| r.0.clone()).collect();
            holders.dedup();
            self.ctx.emit(
                Some(&self.pipeline.name),
                EventKind::Stall {
                    pipeline: self.pipeline.name.clone(),
                    idle_ms: (now - last) as u64,
                    jobs: running.iter().map(|r| r.1.id).collect(),
                    replicas: holders.clone(),
                    restarted: restart,
                },
            );
            if restart {
                self.restart_stalled(running).await;
            }
        }
    }

    /// Kills the stalled jobs (per-job) or restarts the replicas holding them (lease);
    /// either way each job's attempt is counted as `stalled` and it is retried.
    async fn restart_stalled(&self, running: Vec<(String, Job)>) {
        if self.pipeline.mode == PipelineMode::PerJob {
            let stops = self.stall_stops.lock().unwrap_or_else(|p| p.into_inner());
            for (slot, _) in &running {
                if let Some(stop) = stops.get(slot) {
                    stop.notify_waiters();
                }
            }
            return;
        }
        let mut restarted = std::collections::BTreeSet::new();
        for (instance, job) in running {
            let owner = format!("{}{instance}", self.owner_prefix);
            let failure = failure(ExitClass::Stalled, &ExitClass::Stalled.to_string(), None);
            self.finish(&owner, &job, Err(failure), false).await;
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

    /// The snapshot for `progress.json`.
    pub fn progress(&self) -> Option<PipelineProgress> {
        let stats = self.store.stats(Some(&self.pipeline.queue)).ok()?;
        let window = self
            .pipeline
            .stall_timeout
            .map_or(self.pipeline.timeout.0 / 2, |w| w.0)
            .as_millis() as i64;
        let now = now_ms();
        let stuck = self
            .store
            .list(&JobFilter {
                queue: Some(self.pipeline.queue.clone()),
                state: Some(JobState::Running),
                limit: Some(1000),
            })
            .ok()?
            .into_iter()
            .filter(|j| j.started_at.is_some_and(|t| now - t > window))
            .collect();
        Some(PipelineProgress {
            pipeline: self.pipeline.name.clone(),
            queue: self.pipeline.queue.clone(),
            stats,
            stuck,
            idle_seconds: Some(
                ((now - self.last_completion.load(Ordering::Relaxed)) / 1000).max(0) as u64,
            ),
        })
    }

    pub fn summary(&self) -> RunSummary {
        let counts = self
            .store
            .stats(Some(&self.pipeline.queue))
            .map(|s| s.counts)
            .unwrap_or_default();
        let quarantined = self
            .store
            .list(&JobFilter {
                queue: Some(self.pipeline.queue.clone()),
                state: Some(JobState::Quarantined),
                limit: None,
            })
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
            pipeline: self.pipeline.name.clone(),
            counts,
            quarantined,
        }
    }
}

/// A job that could not be started at all (no input, a refused input, a bad template).
fn cannot_run(why: &str) -> Failure {
    failure(
        ExitClass::SpawnFailed {
            reason: why.to_string(),
        },
        why,
        None,
    )
}

fn failure(class: ExitClass, error: &str, stderr_tail: Option<String>) -> Failure {
    Failure {
        class,
        error: error.to_string(),
        stderr_tail,
    }
}

/// With `confine_inputs`, an input must resolve (symlinks and `..` followed) inside the
/// input root or one of the pipeline's `inputs`.
fn confined(input: &Path, p: &Pipeline) -> Result<(), String> {
    let real = input
        .canonicalize()
        .map_err(|e| format!("input {} cannot be resolved: {e}", input.display()))?;
    let roots: Vec<PathBuf> = p
        .input_root
        .iter()
        .chain(p.inputs.iter())
        .filter_map(|r| r.canonicalize().ok())
        .collect();
    if roots.iter().any(|r| real.starts_with(r)) {
        Ok(())
    } else {
        Err(format!(
            "input {} resolves to {}, outside the input root ({}); refused because confine_inputs = true",
            input.display(),
            real.display(),
            roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
        ))
    }
}
