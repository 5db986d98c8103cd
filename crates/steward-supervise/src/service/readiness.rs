//! When a running instance counts as ready: its health check passes, it says `READY=1` on
//! its `NOTIFY_SOCKET`, or (with neither, on a GPU) it has run for `gpu_settle`. Probes run
//! in their own tasks, one at a time, so a slow one never holds up the instance's loop.

use crate::health::{self, HealthTracker, ProbeEnv, ProbeResult};
use crate::notify::NotifySocket;
use crate::reaper::Reaper;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use steward_api::Health;
use steward_config::Service;
use tokio::sync::mpsc;
use tokio::time::Sleep;

/// What changed about a run's readiness.
pub(crate) enum ReadinessEvent {
    /// It is ready now; `by_notify` when it said so with READY=1.
    Ready { by_notify: bool },
    /// A probe answered.
    Probed {
        health: Health,
        error: Option<String>,
        /// The new health, when it changed.
        changed: Option<Health>,
        /// It failed `liveness_failures` probes in a row after being healthy: restart it.
        restart: bool,
    },
}

pub(crate) struct Readiness {
    svc: Arc<Service>,
    reaper: Arc<Reaper>,
    penv: ProbeEnv,
    notify: Option<NotifySocket>,
    tracker: Option<HealthTracker>,
    probe_timer: Pin<Box<Sleep>>,
    probe_in_flight: bool,
    probes: (mpsc::Sender<ProbeResult>, mpsc::Receiver<ProbeResult>),
    /// Armed once, for a GPU replica with no readiness signal of its own.
    settle: Option<Pin<Box<Sleep>>>,
    ready: bool,
}

impl Readiness {
    /// Readiness for a run that started at `started`. `on_gpu`: without a check or notify,
    /// it is ready after `gpu_settle` (time to create its CUDA context) instead of at once.
    pub fn new(
        svc: Arc<Service>,
        on_gpu: bool,
        notify: Option<NotifySocket>,
        started: Instant,
        reaper: Arc<Reaper>,
        penv: ProbeEnv,
    ) -> Self {
        let tracker = svc
            .health
            .as_ref()
            .map(|c| HealthTracker::new(c, svc.liveness_failures, started));
        let first_probe = svc
            .health
            .as_ref()
            .map_or(Duration::from_secs(3600), |c| c.start_interval.0);
        let settle = (on_gpu && !svc.has_readiness())
            .then(|| Box::pin(tokio::time::sleep(svc.gpu_settle.0)));
        let ready = !svc.has_readiness() && !on_gpu;
        Readiness {
            tracker,
            probe_timer: Box::pin(tokio::time::sleep(first_probe)),
            probe_in_flight: false,
            probes: mpsc::channel(1),
            settle,
            ready,
            notify,
            svc,
            reaper,
            penv,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The next change. Cancel-safe: its state lives in `self`.
    pub async fn next(&mut self) -> ReadinessEvent {
        loop {
            tokio::select! {
                _ = elapsed(&mut self.settle), if !self.ready => {
                    self.settle = None;
                    self.ready = true;
                    return ReadinessEvent::Ready { by_notify: false };
                }
                msg = recv_notify(self.notify.as_ref()) => {
                    if msg.lines().any(|l| l.trim() == "READY=1") && !self.ready {
                        self.ready = true;
                        return ReadinessEvent::Ready { by_notify: true };
                    }
                }
                _ = self.probe_timer.as_mut(), if self.tracker.is_some() && !self.probe_in_flight => {
                    self.probe_in_flight = true;
                    let (check, reaper, tx) = (self.svc.health.clone(), self.reaper.clone(), self.probes.0.clone());
                    let penv = self.penv.clone();
                    tokio::spawn(async move {
                        if let Some(check) = check {
                            let _ = tx.send(health::probe(&check, &reaper, &penv).await).await;
                        }
                    });
                }
                Some(result) = self.probes.1.recv() => {
                    self.probe_in_flight = false;
                    if let Some(event) = self.record(result) {
                        return event;
                    }
                }
            }
        }
    }

    fn record(&mut self, result: ProbeResult) -> Option<ReadinessEvent> {
        let (tracker, check) = (self.tracker.as_mut()?, self.svc.health.as_ref()?);
        let update = tracker.record(Instant::now(), result);
        let health = tracker.state;
        // Probed often while starting, at `interval` once healthy (or ready by READY=1).
        let next = if health == Health::Healthy || self.ready {
            check.interval.0
        } else {
            check.start_interval.0
        };
        self.probe_timer
            .as_mut()
            .reset(tokio::time::Instant::now() + next);
        match update.changed {
            Some(Health::Healthy) => self.ready = true,
            Some(Health::Unhealthy) if !self.svc.notify => self.ready = false,
            _ => {}
        }
        Some(ReadinessEvent::Probed {
            health,
            error: tracker.last_error.clone(),
            changed: update.changed,
            restart: update.restart,
        })
    }
}

/// Resolves when the timer has run out; never when there is none.
async fn elapsed(timer: &mut Option<Pin<Box<Sleep>>>) {
    match timer {
        Some(t) => t.as_mut().await,
        None => std::future::pending().await,
    }
}

/// The next datagram on the notify socket; never resolves when there is none.
async fn recv_notify(sock: Option<&NotifySocket>) -> String {
    match sock {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}
