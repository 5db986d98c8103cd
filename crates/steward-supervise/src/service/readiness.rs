//! When a running instance counts as ready: its health check passes, it says `READY=1` on
//! its `NOTIFY_SOCKET`, or (with neither, on a GPU) it has run for `gpu_settle`. Probes run
//! in their own tasks, one at a time, so a slow one never holds up the instance's loop.

use crate::health::{self, HealthTracker, ProbeEnv, ProbeResult};
use crate::notify::NotifySocket;
use crate::reaper::Reaper;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
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
    notify: Option<NotifySocket>,
    /// Only for a service with a health check: an idle instance without one holds no
    /// timer and no channel.
    probing: Option<Box<Probing>>,
    /// Armed once, for a GPU replica with no readiness signal of its own.
    settle: Option<Pin<Box<Sleep>>>,
    ready: bool,
}

/// A run's health checks: when the next probe is due, and the one in flight.
struct Probing {
    tracker: HealthTracker,
    timer: Pin<Box<Sleep>>,
    in_flight: bool,
    results: (mpsc::Sender<ProbeResult>, mpsc::Receiver<ProbeResult>),
    reaper: Arc<Reaper>,
    penv: ProbeEnv,
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
        let probing = svc.health.as_ref().map(|c| {
            Box::new(Probing {
                tracker: HealthTracker::new(c, svc.liveness_failures, started),
                timer: Box::pin(tokio::time::sleep(c.start_interval.0)),
                in_flight: false,
                results: mpsc::channel(1),
                reaper,
                penv,
            })
        });
        let settle = (on_gpu && !svc.has_readiness())
            .then(|| Box::pin(tokio::time::sleep(svc.gpu_settle.0)));
        let ready = !svc.has_readiness() && !on_gpu;
        Readiness {
            probing,
            settle,
            ready,
            notify,
            svc,
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
                step = next_probe_step(&mut self.probing) => match step {
                    ProbeStep::Due => {
                        let Some(p) = self.probing.as_mut() else { continue };
                        p.in_flight = true;
                        let (check, reaper, tx) = (self.svc.health.clone(), p.reaper.clone(), p.results.0.clone());
                        let penv = p.penv.clone();
                        tokio::spawn(async move {
                            if let Some(check) = check {
                                let _ = tx.send(health::probe(&check, &reaper, &penv).await).await;
                            }
                        });
                    }
                    ProbeStep::Answered(result) => {
                        if let Some(p) = self.probing.as_mut() {
                            p.in_flight = false;
                        }
                        if let Some(event) = self.record(result) {
                            return event;
                        }
                    }
                },
            }
        }
    }

    fn record(&mut self, result: ProbeResult) -> Option<ReadinessEvent> {
        let (probing, check) = (self.probing.as_mut()?, self.svc.health.as_ref()?);
        let tracker = &mut probing.tracker;
        let update = tracker.record(Instant::now(), result);
        let health = tracker.state;
        // Probed often while starting, at `interval` once healthy (or ready by READY=1).
        let next = if health == Health::Healthy || self.ready {
            check.interval.0
        } else {
            check.start_interval.0
        };
        probing
            .timer
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

enum ProbeStep {
    /// The next probe is due (and none is in flight).
    Due,
    /// The probe in flight answered.
    Answered(ProbeResult),
}

/// What the health checks want next; never resolves without checks.
async fn next_probe_step(probing: &mut Option<Box<Probing>>) -> ProbeStep {
    let Some(p) = probing else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = p.timer.as_mut(), if !p.in_flight => ProbeStep::Due,
        Some(r) = p.results.1.recv() => ProbeStep::Answered(r),
        else => std::future::pending().await,
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
