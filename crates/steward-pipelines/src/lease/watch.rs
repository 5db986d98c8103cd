//! What happens to leases without the worker's word: a replica that died while holding
//! one fails its job with the way it died; a job past its `timeout` fails as `TimedOut`
//! and its replica is restarted (it is stuck in that job); a lease nobody heartbeats
//! expires.

use super::broker::LeaseBroker;
use crate::reporter::failure;
use std::sync::Arc;
use std::time::Duration;
use steward_events::ExitClass;
use steward_queue::{now_ms, Job, JobFilter, JobState};
use tokio::sync::watch;

pub(super) async fn watch_leases(broker: Arc<LeaseBroker>, mut shutdown: watch::Receiver<bool>) {
    let mut exits = broker.supervisor.context().subscribe_exits();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = steward_net::stopped(&mut shutdown) => return,
            exit = exits.recv() => {
                let Ok(exit) = exit else { continue };
                // Our own stops (shutdown, restarts) leave leases to the timeout path or
                // the next agent's rescue.
                if matches!(exit.class, ExitClass::Stopped) {
                    continue;
                }
                let Some(runner) = broker.runner_of_instance(&exit.instance).cloned() else { continue };
                for job in held_by(&broker, &exit.instance).await {
                    let why = format!("{} died holding it: {}", exit.instance, exit.class);
                    runner.reporter.report(&job, Err(failure(exit.class.clone(), &why, None)), false).await;
                }
                broker.wake.notify_waiters();
            }
            _ = tick.tick() => check_timeouts(&broker).await,
        }
    }
}

/// Jobs held by `instance` right now.
async fn held_by(broker: &LeaseBroker, instance: &str) -> Vec<Job> {
    let owner = broker.owner(instance);
    broker
        .store
        .list(&JobFilter::default().state(JobState::Running))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|j| j.lease_owner.as_deref() == Some(owner.as_str()))
        .collect()
}

async fn check_timeouts(broker: &LeaseBroker) {
    let now = now_ms();
    for runner in broker.runners.values() {
        let limit = runner
            .pipeline()
            .timeout
            .0
            .as_millis()
            .min(i64::MAX as u128) as i64;
        let running = broker
            .store
            .list(&JobFilter::queue(&runner.pipeline().queue).state(JobState::Running))
            .await
            .unwrap_or_default();
        for job in running {
            // Only this run's leases: other nodes watch their own.
            let Some(owner) = job
                .lease_owner
                .clone()
                .filter(|o| o.starts_with(&broker.owner_prefix))
            else {
                continue;
            };
            let expired = job.lease_expires_at.is_some_and(|t| t < now);
            let timed_out = job.started_at.is_some_and(|t| now - t > limit);
            if !(expired || timed_out) {
                continue;
            }
            let class = if timed_out {
                ExitClass::TimedOut
            } else {
                ExitClass::LeaseExpired
            };
            runner
                .reporter
                .report(
                    &job,
                    Err(failure(class.clone(), &class.to_string(), None)),
                    false,
                )
                .await;
            if timed_out {
                // The worker is stuck in this job: restart its replica.
                let instance = broker.instance_of(&owner).to_string();
                let sup = broker.supervisor.clone();
                tokio::spawn(async move {
                    if let Err(e) = sup.restart(&instance).await {
                        tracing::warn!("cannot restart {instance} after a job timeout: {e}");
                    }
                });
            }
            broker.wake.notify_waiters();
        }
    }
}
