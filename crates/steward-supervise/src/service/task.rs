//! The task of one instance: one loop that waits for the next input of its current
//! [`Phase`] (a command, its GPU's lock, the end of a backoff, its process's exit, a
//! readiness change, a soft limit passed) and handles it. Only this task writes the
//! instance's [`TaskState`].

use super::explaining::{Explained, Pending};
use super::messages::Control;
use super::readiness::{Readiness, ReadinessEvent};
use super::state::TaskState;
use crate::backoff::RestartTracker;
use crate::classify::KilledBy;
use crate::context::SupervisorContext;
use crate::execution::{Execution, SpawnError, Spec, Watched};
use crate::health::ProbeEnv;
use crate::notify::NotifySocket;
use crate::output::LogFiles;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use steward_api::{Health, ServiceState};
use steward_config::{RestartPolicy, Service};
use steward_events::{EventKind, ExitClass};
use steward_plan::Instance;
use tokio::sync::{mpsc, oneshot, watch, OwnedMutexGuard};
use tokio::time::Sleep;

type GpuWait = Pin<Box<dyn Future<Output = OwnedMutexGuard<()>> + Send>>;

/// Where an instance is.
pub(super) enum Phase {
    /// Not wanted: stopped, exited or failed (the state says which).
    Idle,
    /// Wanted, and waiting for its GPU's lock: another replica is starting on that GPU.
    AwaitingGpu(GpuWait),
    /// A process runs.
    Running(Box<Run>),
    /// It exited; the next start comes at the end of this sleep.
    BackingOff(Pin<Box<Sleep>>),
}

pub(super) struct Run {
    pub(super) exec: Execution,
    /// Held from spawn until ready, so that the next replica on the GPU waits for it.
    gpu: Option<OwnedMutexGuard<()>>,
    readiness: Readiness,
}

/// What woke the loop.
enum Input {
    /// A message; `None` once the supervisor is gone (the agent is stopping).
    Command(Option<Control>),
    GpuAcquired(OwnedMutexGuard<()>),
    BackoffOver,
    Exited,
    Readiness(ReadinessEvent),
    OverSoftLimit,
    Finding(steward_explain::LiveFinding),
    /// An earlier exit's explanation is ready: its event can be written.
    Explained(Explained),
}

/// What follows the end of a run.
pub(super) enum Then {
    /// Restart by policy, after a backoff.
    Decide,
    Stop(oneshot::Sender<()>),
    Restart(oneshot::Sender<()>),
    Shutdown,
}

pub(crate) struct Task {
    pub(super) inst: Arc<Instance>,
    pub(super) svc: Arc<Service>,
    pub(super) unit: String,
    pub(super) ctx: Arc<SupervisorContext>,
    pub(super) rx: mpsc::Receiver<Control>,
    pub(super) state: watch::Sender<TaskState>,
    pub(super) logs: Arc<Mutex<LogFiles>>,
    pub(super) tracker: RestartTracker,
    /// Replies owed to `start`/`restart` callers once the next spawn is done.
    pub(super) waiting_for_spawn: Vec<oneshot::Sender<()>>,
    pub(super) phase: Phase,
    /// Exits so far; numbers the exits being explained.
    pub(super) exits: u64,
    /// Exits whose events wait for their explanation.
    pub(super) explaining: Pending,
}

impl Task {
    pub fn new(
        inst: Arc<Instance>,
        svc: Arc<Service>,
        ctx: Arc<SupervisorContext>,
        rx: mpsc::Receiver<Control>,
        state: watch::Sender<TaskState>,
        logs: LogFiles,
    ) -> Self {
        Task {
            unit: format!("{}/{}", ctx.agent_id, inst.name),
            tracker: RestartTracker::new(svc.backoff, svc.crash_loop),
            logs: Arc::new(Mutex::new(logs)),
            waiting_for_spawn: Vec::new(),
            phase: Phase::Idle,
            exits: 0,
            explaining: Pending::default(),
            inst,
            svc,
            ctx,
            rx,
            state,
        }
    }

    pub async fn run(mut self) {
        loop {
            let input = self.next_input().await;
            // Boxed: the handling of one input (a stop, say) is a large future, needed
            // only while it runs, not held by every idle instance.
            if !Box::pin(self.on(input)).await {
                self.explain_the_rest().await;
                return;
            }
        }
    }

    async fn next_input(&mut self) -> Input {
        let rx = &mut self.rx;
        let explained = &mut self.explaining;
        match &mut self.phase {
            Phase::Idle => tokio::select! {
                cmd = rx.recv() => Input::Command(cmd),
                e = explained.next() => Input::Explained(e),
            },
            Phase::AwaitingGpu(acquire) => tokio::select! {
                cmd = rx.recv() => Input::Command(cmd),
                guard = acquire.as_mut() => Input::GpuAcquired(guard),
                e = explained.next() => Input::Explained(e),
            },
            Phase::BackingOff(sleep) => tokio::select! {
                cmd = rx.recv() => Input::Command(cmd),
                _ = sleep.as_mut() => Input::BackoffOver,
                e = explained.next() => Input::Explained(e),
            },
            Phase::Running(run) => tokio::select! {
                cmd = rx.recv() => Input::Command(cmd),
                e = explained.next() => Input::Explained(e),
                w = run.exec.watch() => match w {
                    Watched::Exited => Input::Exited,
                    Watched::OverSoftLimit => Input::OverSoftLimit,
                    Watched::Finding(f) => Input::Finding(f),
                },
                ev = run.readiness.next() => Input::Readiness(ev),
            },
        }
    }

    /// Handles one input; false when the task ends.
    async fn on(&mut self, input: Input) -> bool {
        match input {
            Input::Command(None) => {
                self.shutdown().await;
                return false;
            }
            Input::Command(Some(cmd)) => self.command(cmd).await,
            Input::GpuAcquired(guard) => {
                self.set(|s| s.waiting_on = None);
                self.spawn(Some(guard));
            }
            Input::BackoffOver => self.restart_after_backoff(),
            Input::Explained(done) => self.explained(done),
            Input::Exited => self.end_run(None, Then::Decide).await,
            Input::Readiness(ev) => self.readiness(ev).await,
            Input::Finding(f) => self.finding(f).await,
            Input::OverSoftLimit => {
                if let Phase::Running(run) = &mut self.phase {
                    run.exec.kill().await;
                }
                self.end_run(Some(KilledBy::Watchdog), Then::Decide).await;
            }
        }
        true
    }

    async fn command(&mut self, cmd: Control) {
        match cmd {
            Control::Start(done) => match self.phase {
                Phase::Running(_) => {
                    let _ = done.send(());
                }
                Phase::AwaitingGpu(_) => self.waiting_for_spawn.push(done),
                Phase::Idle | Phase::BackingOff(_) => {
                    self.waiting_for_spawn.push(done);
                    self.start_now();
                }
            },
            Control::Restart(done) => match self.phase {
                Phase::Running(_) => {
                    self.end_run(Some(KilledBy::Stop), Then::Restart(done))
                        .await
                }
                Phase::AwaitingGpu(_) => self.waiting_for_spawn.push(done),
                Phase::Idle | Phase::BackingOff(_) => {
                    self.waiting_for_spawn.push(done);
                    self.start_now();
                }
            },
            Control::Stop(done) => {
                match self.phase {
                    Phase::Running(_) => {
                        return self.end_run(Some(KilledBy::Stop), Then::Stop(done)).await
                    }
                    Phase::Idle => self.set(|s| {
                        if s.state == ServiceState::Waiting {
                            s.state = ServiceState::Stopped;
                            s.waiting_on = None;
                        }
                    }),
                    Phase::AwaitingGpu(_) | Phase::BackingOff(_) => {
                        self.phase = Phase::Idle;
                        self.set(|s| {
                            s.next_start = None;
                            s.waiting_on = None;
                            s.state = ServiceState::Stopped;
                        });
                        self.emit(EventKind::Stopped);
                    }
                }
                let _ = done.send(());
            }
            Control::Signal(sig) => {
                if let Phase::Running(run) = &self.phase {
                    run.exec.signal_group(sig);
                }
            }
            Control::KernelFinding(f) => {
                self.set(|s| {
                    s.last_finding =
                        Some(Box::new((*f, Instant::now(), std::time::SystemTime::now())))
                });
            }
            Control::Waiting(text) => {
                if matches!(self.phase, Phase::Idle) {
                    self.set(|s| {
                        if matches!(s.state, ServiceState::Stopped | ServiceState::Waiting) {
                            if text.is_some() {
                                s.state = ServiceState::Waiting;
                            }
                            s.waiting_on = text;
                        }
                    });
                }
            }
        }
    }

    /// Asked to start while idle or backing off: at once, with a clean backoff history.
    fn start_now(&mut self) {
        self.tracker.reset();
        if matches!(self.phase, Phase::BackingOff(_)) {
            self.set(|s| {
                s.next_start = None;
                s.restarts += 1;
            });
        }
        self.begin();
    }

    /// Takes the GPU's lock (or waits for it), then spawns.
    fn begin(&mut self) {
        let Some(gpu) = self.inst.gpu.clone() else {
            return self.spawn(None);
        };
        let lock = self.ctx.gpu_lock(&gpu.uuid);
        if let Ok(guard) = lock.clone().try_lock_owned() {
            return self.spawn(Some(guard));
        }
        self.set(|s| {
            s.state = ServiceState::Waiting;
            s.waiting_on = Some(format!(
                "GPU {}: another replica is starting on it",
                gpu.index
            ));
        });
        self.phase = Phase::AwaitingGpu(Box::pin(lock.lock_owned()));
    }

    fn spawn(&mut self, mut gpu: Option<OwnedMutexGuard<()>>) {
        // A log deleted while the service was down gets a fresh file, not a dead inode.
        if let Ok(mut logs) = self.logs.lock() {
            if let Err(e) = logs.reopen_if_gone() {
                tracing::warn!("{}: cannot reopen its log: {e}", self.inst.name);
            }
        }
        let mut env = self.inst.env.clone();
        env.insert("STEWARD_SERVICE".into(), self.inst.name.clone());
        let notify = if self.svc.notify {
            match NotifySocket::bind(&self.unit) {
                Ok(sock) => {
                    env.insert("NOTIFY_SOCKET".into(), sock.env_value());
                    Some(sock)
                }
                Err(e) => {
                    return self.spawn_failed(SpawnError {
                        reason: format!("cannot create its NOTIFY_SOCKET: {e}"),
                        permanent: false,
                    })
                }
            }
        } else {
            None
        };
        let argv: Vec<std::ffi::OsString> = self.svc.argv.iter().map(Into::into).collect();
        let spec = Spec {
            name: &self.inst.name,
            svc: &self.svc,
            argv: &argv,
            cpus: self.inst.cpus.as_deref(),
            env: &env,
            logs: self.logs.clone(),
            keep_tail: 0,
            watch_output: true,
            strays: (self.svc.stop_signal.0, self.svc.stop_timeout.0),
        };
        // The previous run's output is all written (its pump ended with it).
        let log_at = self.logs.lock().map(|l| l.position()).ok();
        let exec = match Execution::spawn(&self.ctx, spec) {
            Ok(e) => e,
            Err(e) => return self.spawn_failed(e),
        };
        let (started, wall) = exec.started();
        let penv = ProbeEnv {
            cwd: self.svc.cwd.clone(),
            env,
        };
        let readiness = Readiness::new(
            self.svc.clone(),
            self.inst.gpu.is_some(),
            notify,
            started,
            self.ctx.reaper.clone(),
            penv,
        );
        let ready = readiness.is_ready();
        let (pid, cgroup) = (exec.pid() as u32, exec.cgroup().cloned());
        let has_health = self.svc.health.is_some();
        self.set(|s| {
            s.state = ServiceState::Running;
            s.pid = Some(pid);
            s.started = Some((started, wall));
            s.cgroup = cgroup;
            s.health = has_health.then_some(Health::Starting);
            s.health_error = None;
            s.ready = ready;
            s.waiting_on = None;
        });
        self.emit(EventKind::Started {
            pid,
            enforcement: Some(self.ctx.cgroups.enforcement()),
            gpu: self.inst.gpu.as_ref().map(|g| g.index),
            log_at,
        });
        self.reply_spawned();
        if ready {
            gpu = None;
        }
        self.phase = Phase::Running(Box::new(Run {
            exec,
            gpu,
            readiness,
        }));
    }

    /// A spawn that failed: retried by policy, unless it can never succeed as configured
    /// (then the instance is failed, with the reason, until someone starts it again).
    fn spawn_failed(&mut self, error: SpawnError) {
        let class = ExitClass::SpawnFailed {
            reason: error.reason,
        };
        self.emit(EventKind::Exited {
            pid: 0,
            class: class.clone(),
            ran_ms: 0,
            peak_memory: None,
            explain: None,
        });
        self.reply_spawned();
        self.set(|s| {
            s.pid = None;
            s.ready = false;
            s.waiting_on = None;
            s.last_exit = Some(class.clone());
        });
        if error.permanent {
            self.phase = Phase::Idle;
            self.set(|s| s.state = ServiceState::Failed);
            return;
        }
        self.decide(class, Duration::ZERO);
    }

    async fn readiness(&mut self, ev: ReadinessEvent) {
        match ev {
            ReadinessEvent::Ready { by_notify } => {
                self.mark_ready();
                if by_notify && self.svc.health.is_none() {
                    self.emit(EventKind::Health {
                        state: "healthy".into(),
                        error: Some("READY=1 on NOTIFY_SOCKET".into()),
                    });
                }
            }
            ReadinessEvent::Probed {
                health,
                error,
                changed,
                restart,
            } => {
                let shown = error.clone();
                self.set(|s| {
                    s.health = Some(health);
                    s.health_error = shown;
                });
                if let Some(new) = changed {
                    self.emit(EventKind::Health {
                        state: new.to_string(),
                        error,
                    });
                    if new == Health::Healthy {
                        self.mark_ready();
                    } else if new == Health::Unhealthy && !self.svc.notify {
                        self.set(|s| s.ready = false);
                    }
                }
                if restart {
                    self.end_run(Some(KilledBy::Unhealthy), Then::Decide).await;
                }
            }
        }
    }

    /// Ready: the next replica on its GPU may start.
    fn mark_ready(&mut self) {
        if let Phase::Running(run) = &mut self.phase {
            run.gpu.take();
        }
        self.set(|s| s.ready = true);
    }

    /// Ends the running process (stopping it first for a stop, restart or failed health),
    /// records how it ended, and goes on as `then` says.
    pub(super) async fn end_run(&mut self, killed_by: Option<KilledBy>, then: Then) {
        let Phase::Running(run) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        let Run { mut exec, gpu, .. } = *run;
        if matches!(
            killed_by,
            Some(KilledBy::Stop | KilledBy::Unhealthy | KilledBy::FatalFinding)
        ) {
            let sig = self.svc.stop_signal.0;
            self.set(|s| s.state = ServiceState::Stopping);
            self.emit(EventKind::Stopping {
                signal: sig.as_str().to_string(),
            });
            exec.stop(sig, self.svc.stop_timeout.0).await;
        }
        drop(gpu);
        let ended = exec.finish(killed_by).await;
        self.record_end(&ended);
        match then {
            Then::Decide => self.decide(ended.class, ended.ran),
            Then::Stop(done) => {
                self.set(|s| s.state = ServiceState::Stopped);
                self.emit(EventKind::Stopped);
                let _ = done.send(());
            }
            Then::Shutdown => {
                self.set(|s| s.state = ServiceState::Stopped);
                self.emit(EventKind::Stopped);
            }
            Then::Restart(done) => {
                self.waiting_for_spawn.push(done);
                self.tracker.reset();
                self.set(|s| s.restarts += 1);
                self.begin();
            }
        }
        // The restart is under way: now the exit's reading may start beside it.
        self.explaining.start_waiting();
    }

    /// After an exit on its own: restart by policy, after a backoff, or stay down.
    fn decide(&mut self, class: ExitClass, ran: Duration) {
        let failed = class.is_failure();
        let restart = match self.svc.restart {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Never => false,
        };
        if !restart {
            self.phase = Phase::Idle;
            self.set(|s| {
                s.state = if failed {
                    ServiceState::Failed
                } else {
                    ServiceState::Exited
                }
            });
            return;
        }
        let decision = self
            .tracker
            .on_exit(Instant::now(), ran, class, fastrand::f64());
        let restarts = self.state.borrow().restarts + 1;
        if let Some(report) = &decision.crash_loop {
            self.emit(EventKind::CrashLoop {
                exits: report.exits,
                window_ms: report.window.as_millis() as u64,
                last: report.last.clone(),
            });
        }
        self.emit(EventKind::Restarting {
            delay_ms: decision.delay.as_millis() as u64,
            restarts,
        });
        let next_start = Instant::now() + decision.delay;
        self.set(|s| {
            s.state = if decision.crash_loop.is_some() {
                ServiceState::CrashLoop
            } else {
                ServiceState::Backoff
            };
            s.recent_exits = decision.crash_loop.map(|r| r.last).unwrap_or_default();
            s.next_start = Some(next_start);
        });
        if decision.delay.is_zero() {
            // No backoff: at once, not at the timer's next tick.
            return self.restart_after_backoff();
        }
        self.phase = Phase::BackingOff(Box::pin(tokio::time::sleep(decision.delay)));
    }

    fn restart_after_backoff(&mut self) {
        self.set(|s| {
            s.next_start = None;
            s.restarts += 1;
        });
        self.begin();
    }

    /// The supervisor is gone: stop whatever runs, and end.
    async fn shutdown(&mut self) {
        match self.phase {
            Phase::Running(_) => self.end_run(Some(KilledBy::Stop), Then::Shutdown).await,
            Phase::AwaitingGpu(_) => {
                self.phase = Phase::Idle;
                self.set(|s| {
                    s.waiting_on = None;
                    s.state = ServiceState::Stopped;
                });
                self.emit(EventKind::Stopped);
            }
            Phase::Idle | Phase::BackingOff(_) => {}
        }
    }

    fn reply_spawned(&mut self) {
        for done in self.waiting_for_spawn.drain(..) {
            let _ = done.send(());
        }
    }

    pub(super) fn set(&self, f: impl FnOnce(&mut TaskState)) {
        self.state.send_modify(f);
        self.ctx.changed();
    }

    pub(super) fn emit(&self, kind: EventKind) {
        self.ctx.emit(Some(&self.inst.name), kind);
    }
}
