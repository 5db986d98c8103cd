//! Where a job's outcome goes: back to the queue (complete, or fail and retry, or
//! quarantine), into the event log with `explain`'s reading of its output, and, for a
//! quarantined input, beside it in the quarantine folder with every attempt's reason.

use crate::quarantine::quarantine;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use steward_config::Pipeline;
use steward_events::{EventKind, ExitClass};
use steward_queue::{now_ms, FailOutcome, Failure, Job, JobStore, QueueError};
use steward_supervise::SupervisorContext;

pub struct Reporter {
    pub(crate) ctx: Arc<SupervisorContext>,
    pub(crate) store: Arc<dyn JobStore>,
    pub(crate) pipeline: Arc<Pipeline>,
    /// When a job of this pipeline last completed (ms since the epoch): the stall watch
    /// and `progress.json` read it.
    last_completion: AtomicI64,
}

impl Reporter {
    pub fn new(
        ctx: Arc<SupervisorContext>,
        store: Arc<dyn JobStore>,
        pipeline: Arc<Pipeline>,
    ) -> Self {
        Reporter {
            ctx,
            store,
            pipeline,
            last_completion: AtomicI64::new(now_ms()),
        }
    }

    pub fn last_completion(&self) -> i64 {
        self.last_completion.load(Ordering::Relaxed)
    }

    /// Reports how `job` (as it was leased) ended; quarantines its input when it is out of
    /// attempts, or at once with `at_once` (an input that must never run). A report for a
    /// lease that has since been lost changes nothing, and says so: then it returns false.
    pub async fn report(&self, job: &Job, outcome: Result<(), Failure>, at_once: bool) -> bool {
        let Some(lease) = job.lease() else {
            tracing::warn!(
                "{}: job {} is not leased; its outcome is dropped",
                self.pipeline.name,
                job.id
            );
            return false;
        };
        match outcome {
            Ok(()) => match retrying(|| self.store.complete(&lease)).await {
                Ok(true) => {
                    self.last_completion.store(now_ms(), Ordering::Relaxed);
                    self.ctx
                        .tally
                        .job_attempt(&self.pipeline.queue, Ok(()), true, ran_s(job));
                    true
                }
                Ok(false) => {
                    tracing::warn!(
                        "{}: job {} attempt {} by {} completed after its lease was lost; the completion is refused (the job runs again or already ran elsewhere)",
                        self.pipeline.name, job.id, lease.attempt, lease.owner
                    );
                    false
                }
                Err(e) => {
                    tracing::warn!(
                        "{}: cannot record job {} as done: {e}",
                        self.pipeline.name,
                        job.id
                    );
                    false
                }
            },
            Err(f) => {
                let result = if at_once {
                    retrying(|| self.store.quarantine_now(&lease, f.clone()))
                        .await
                        .map(|q| {
                            if q {
                                FailOutcome::Quarantined {
                                    attempts: lease.attempt,
                                }
                            } else {
                                FailOutcome::NotLeased
                            }
                        })
                } else {
                    retrying(|| self.store.fail(&lease, f.clone(), &self.pipeline.backoff)).await
                };
                let quarantined = match result {
                    Ok(FailOutcome::Quarantined { .. }) => true,
                    Ok(FailOutcome::Retrying { .. }) => false,
                    Ok(FailOutcome::NotLeased) => {
                        tracing::warn!(
                            "{}: job {} attempt {} by {} failed after its lease was lost; the failure is not counted",
                            self.pipeline.name, job.id, lease.attempt, lease.owner
                        );
                        return false;
                    }
                    Err(e) => {
                        tracing::warn!(
                            "{}: cannot record the failure of job {}: {e}",
                            self.pipeline.name,
                            job.id
                        );
                        return false;
                    }
                };
                self.ctx.tally.job_attempt(
                    &self.pipeline.queue,
                    Err(&f.class),
                    quarantined,
                    ran_s(job),
                );
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
                    self.quarantine_input(job).await;
                }
                true
            }
        }
    }

    async fn quarantine_input(&self, job: &Job) {
        let (Some(dir), Some(input)) = (&self.pipeline.quarantine_dir, job.input_path()) else {
            return;
        };
        let Ok(Some((job, attempts))) = self.store.get(job.id).await else {
            return;
        };
        let (dir, mode) = (dir.clone(), self.pipeline.quarantine);
        let name = self.pipeline.name.clone();
        let moved = tokio::task::spawn_blocking(move || {
            quarantine(&dir, mode, &input, &job, &attempts).map_err(|e| {
                format!(
                    "{name}: cannot quarantine {} into {}: {e}",
                    steward_config::escaped_os(input.as_os_str()),
                    dir.display()
                )
            })
        })
        .await;
        if let Ok(Err(why)) = moved {
            tracing::warn!("{why}");
        }
    }
}

/// Seconds since the job first started (its first attempt), for the duration histogram.
fn ran_s(job: &Job) -> f64 {
    let since = job.started_at.unwrap_or(job.created_at);
    (now_ms() - since).max(0) as f64 / 1000.0
}

/// How long an outcome is retried while the queue cannot take it (a database that
/// restarts): past this the job is left to the lease's expiry and rescue.
const REPORT_FOR: Duration = Duration::from_secs(60);

/// Runs `op` until the store takes it, backing off from 100 ms to 5 s, for at most
/// [`REPORT_FOR`]: an outcome is not dropped because the database blinked. Every
/// transition is fenced, so trying again cannot apply it twice.
async fn retrying<T, F: Future<Output = Result<T, QueueError>>>(
    op: impl Fn() -> F,
) -> Result<T, QueueError> {
    let deadline = std::time::Instant::now() + REPORT_FOR;
    let mut delay = Duration::from_millis(100);
    loop {
        match op().await {
            Err(e @ QueueError::Database(_)) if std::time::Instant::now() + delay < deadline => {
                tracing::debug!("the queue did not take an outcome ({e}); trying again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// A job that could not be started at all (no input, a refused input, a bad template).
pub fn cannot_run(why: &str) -> Failure {
    failure(
        ExitClass::SpawnFailed {
            reason: why.to_string(),
        },
        why,
        None,
    )
}

pub fn failure(class: ExitClass, error: &str, stderr_tail: Option<String>) -> Failure {
    Failure {
        class,
        error: error.to_string(),
        stderr_tail,
    }
}
