//! One instance's task: wait for its GPU, spawn, watch health, wait, classify, clean up,
//! decide, repeat. Commands (start, stop, restart, signal) arrive on a channel; the status
//! is shared for `ps` and for dependents waiting on it.

use crate::backoff::RestartTracker;
use crate::cgroup::{CgroupLimits, ServiceCgroup};
use crate::classify::{classify, Evidence, WaitOutcome};
use crate::health::{self, Health, HealthTracker, ProbeResult};
use crate::output::{self, LogFiles};
use crate::reaper::Reaped;
use crate::status::{ServiceState, ServiceStatus};
use crate::supervisor::Context;
use crate::{notify, procfs, spawn};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use steward_config::{RestartPolicy, Service};
use steward_events::{Enforcement, EventKind, ExitClass};
use steward_plan::Instance;
use tokio::sync::{mpsc, oneshot, OwnedMutexGuard};

/// How much of a crashed process's output `explain` reads.
const EXPLAIN_TAIL: u64 = 64 * 1024;

/// How often the RSS watchdog looks, where no cgroup enforces memory.
const WATCHDOG_PERIOD: Duration = Duration::from_millis(500);

pub(crate) enum Control {
    /// Start if not running; `done` fires once a process has been spawned (or failed to).
    Start(oneshot::Sender<()>),
    /// Stop and stay stopped; `done` fires once every process of the instance is gone.
    Stop(oneshot::Sender<()>),
    /// Stop, then start at once without backoff; `done` fires once the new one is spawned.
    Restart(oneshot::Sender<()>),
    /// Forward a signal to the process group (SIGHUP for a reload).
    Signal(Signal),
}

/// What the task shares with `ps` and with the dependents waiting on it.
pub(crate) struct Shared {
    pub state: ServiceState,
    pub pid: Option<u32>,
    pub started: Option<(Instant, SystemTime)>,
    pub restarts: u32,
    pub last_exit: Option<ExitClass>,
    pub recent_exits: Vec<ExitClass>,
    pub next_start: Option<Instant>,
    pub cgroup: Option<ServiceCgroup>,
    pub health: Option<Health>,
    pub health_error: Option<String>,
    pub ready: bool,
    pub waiting_on: Option<String>,
    /// `explain`'s reading of the last failure.
    pub last_explain: Option<String>,
}

impl Shared {
    pub fn new() -> Self {
        Shared {
            state: ServiceState::Stopped,
            pid: None,
            started: None,
            restarts: 0,
            last_exit: None,
            recent_exits: Vec::new(),
            next_start: None,
            cgroup: None,
            health: None,
            health_error: None,
            ready: false,
            waiting_on: None,
            last_explain: None,
        }
    }

    pub fn snapshot(
        &self,
        inst: &Instance,
        svc: &Service,
        unit: &str,
        enforcement: Enforcement,
    ) -> ServiceStatus {
        let now = Instant::now();
        let running = self.pid.is_some();
        let memory_used = if !running {
            None
        } else if let Some(g) = &self.cgroup {
            g.memory_current()
        } else {
            Some(
                procfs::pids_with_marker(unit)
                    .into_iter()
                    .filter_map(procfs::rss_bytes)
                    .sum(),
            )
        };
        ServiceStatus {
            name: inst.name.clone(),
            service: inst.service.clone(),
            replica: inst.replica,
            gpu: inst.gpu.as_ref().map(|g| g.index),
            state: self.state,
            pid: self.pid,
            started_at: self
                .started
                .filter(|_| running)
                .map(|(_, wall)| humantime::format_rfc3339_millis(wall).to_string()),
            uptime_ms: self
                .started
                .filter(|_| running)
                .map(|(t, _)| now.duration_since(t).as_millis() as u64),
            restarts: self.restarts,
            last_exit: self.last_exit.clone(),
            recent_exits: self.recent_exits.clone(),
            next_start_in_ms: self
                .next_start
                .map(|t| t.saturating_duration_since(now).as_millis() as u64),
            memory_used,
            memory_limit: svc.memory.map(|m| m.bytes()),
            enforcement,
            health: self.health,
            last_health_error: self.health_error.clone(),
            ready: self.ready,
            waiting_on: self.waiting_on.clone(),
            last_explain: self.last_explain.clone(),
        }
    }
}

/// Why a run ended from steward's side.
enum Interrupt {
    Stop(oneshot::Sender<()>),
    Restart(oneshot::Sender<()>),
    /// The supervisor is gone: stop and end the task.
    Shutdown,
}

struct RunEnd {
    class: ExitClass,
    ran: Duration,
    interrupt: Option<Interrupt>,
    /// False when the run was interrupted before a process existed (waiting for the GPU).
    spawned: bool,
}

pub(crate) struct Runner {
    pub inst: Instance,
    pub svc: Arc<Service>,
    pub unit: String,
    pub ctx: Arc<Context>,
    pub rx: mpsc::Receiver<Control>,
    pub shared: Arc<Mutex<Shared>>,
    pub logs: Arc<Mutex<LogFiles>>,
    pub tracker: RestartTracker,
    /// Replies owed to `start`/`restart` callers once the next spawn is done.
    pub waiting_for_spawn: Vec<oneshot::Sender<()>>,
}

impl Runner {
    fn set(&self, f: impl FnOnce(&mut Shared)) {
        f(&mut self.shared.lock().unwrap_or_else(|p| p.into_inner()));
        self.ctx.changed();
    }

    fn emit(&self, kind: EventKind) {
        self.ctx.emit(Some(&self.inst.name), kind);
    }

    fn reply_spawned(&mut self) {
        for done in self.waiting_for_spawn.drain(..) {
            let _ = done.send(());
        }
    }

    pub async fn run(mut self) {
        let mut want_running = false;
        loop {
            if !want_running {
                match self.rx.recv().await {
                    None => return,
                    Some(Control::Start(done)) | Some(Control::Restart(done)) => {
                        self.waiting_for_spawn.push(done);
                        self.tracker.reset();
                        want_running = true;
                    }
                    Some(Control::Stop(done)) => {
                        self.set(|s| {
                            if s.state == ServiceState::Waiting {
                                s.state = ServiceState::Stopped;
                                s.waiting_on = None;
                            }
                        });
                        let _ = done.send(());
                    }
                    Some(Control::Signal(_)) => {}
                }
                continue;
            }

            let end = self.run_once().await;
            let failed = end.class.is_failure();
            self.set(|s| {
                s.pid = None;
                s.ready = false;
                s.waiting_on = None;
                if end.spawned {
                    s.last_exit = Some(end.class.clone());
                }
            });
            match end.interrupt {
                Some(Interrupt::Shutdown) => {
                    self.set(|s| s.state = ServiceState::Stopped);
                    self.emit(EventKind::Stopped);
                    return;
                }
                Some(Interrupt::Stop(done)) => {
                    want_running = false;
                    self.set(|s| s.state = ServiceState::Stopped);
                    self.emit(EventKind::Stopped);
                    let _ = done.send(());
                    continue;
                }
                Some(Interrupt::Restart(done)) => {
                    self.waiting_for_spawn.push(done);
                    self.tracker.reset();
                    self.set(|s| s.restarts += 1);
                    continue;
                }
                None => {}
            }

            let restart = match self.svc.restart {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => failed,
                RestartPolicy::Never => false,
            };
            if !restart {
                want_running = false;
                self.set(|s| {
                    s.state = if failed {
                        ServiceState::Failed
                    } else {
                        ServiceState::Exited
                    }
                });
                continue;
            }

            let decision =
                self.tracker
                    .on_exit(Instant::now(), end.ran, end.class, fastrand::f64());
            let restarts = self.shared.lock().map(|s| s.restarts + 1).unwrap_or(1);
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
            self.set(|s| {
                s.state = if decision.crash_loop.is_some() {
                    ServiceState::CrashLoop
                } else {
                    ServiceState::Backoff
                };
                s.recent_exits = decision.crash_loop.map(|r| r.last).unwrap_or_default();
                s.next_start = Some(Instant::now() + decision.delay);
            });

            match self.wait_backoff(decision.delay).await {
                BackoffEnd::Elapsed => {}
                BackoffEnd::StartNow => self.tracker.reset(),
                BackoffEnd::Stop(done) => {
                    want_running = false;
                    self.set(|s| s.state = ServiceState::Stopped);
                    self.emit(EventKind::Stopped);
                    let _ = done.send(());
                }
                BackoffEnd::Shutdown => return,
            }
            self.set(|s| {
                s.next_start = None;
                if want_running {
                    s.restarts += 1;
                }
            });
        }
    }

    async fn wait_backoff(&mut self, delay: Duration) -> BackoffEnd {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return BackoffEnd::Elapsed,
                cmd = self.rx.recv() => match cmd {
                    None => return BackoffEnd::Shutdown,
                    Some(Control::Stop(done)) => return BackoffEnd::Stop(done),
                    Some(Control::Start(done)) | Some(Control::Restart(done)) => {
                        self.waiting_for_spawn.push(done);
                        return BackoffEnd::StartNow;
                    }
                    Some(Control::Signal(_)) => {}
                },
            }
        }
    }

    /// Replicas that share a GPU create their CUDA contexts one at a time: each holds its
    /// GPU's lock from spawn until it is ready. Commands still work while waiting.
    async fn acquire_gpu(&mut self) -> Result<Option<OwnedMutexGuard<()>>, Interrupt> {
        let Some(gpu) = self.inst.gpu.clone() else {
            return Ok(None);
        };
        let lock = self.ctx.gpu_lock(&gpu.uuid);
        if let Ok(guard) = lock.clone().try_lock_owned() {
            return Ok(Some(guard));
        }
        self.set(|s| {
            s.state = ServiceState::Waiting;
            s.waiting_on = Some(format!(
                "GPU {}: another replica is starting on it",
                gpu.index
            ));
        });
        let acquire = lock.lock_owned();
        tokio::pin!(acquire);
        loop {
            tokio::select! {
                guard = &mut acquire => {
                    self.set(|s| s.waiting_on = None);
                    return Ok(Some(guard));
                }
                cmd = self.rx.recv() => match cmd {
                    None => return Err(Interrupt::Shutdown),
                    Some(Control::Stop(done)) => return Err(Interrupt::Stop(done)),
                    Some(Control::Restart(done)) | Some(Control::Start(done)) => self.waiting_for_spawn.push(done),
                    Some(Control::Signal(_)) => {}
                },
            }
        }
    }

    fn limits(&self) -> CgroupLimits {
        CgroupLimits {
            memory: self.svc.memory.map(|m| m.bytes()),
            memory_swap: self.svc.memory_swap.map(|m| m.bytes()),
            pids_max: self.svc.pids_max,
            cpus: self.inst.cpus.clone(),
        }
    }

    fn spawn_failed(&mut self, reason: String) -> RunEnd {
        self.emit(EventKind::Exited {
            pid: 0,
            class: ExitClass::SpawnFailed {
                reason: reason.clone(),
            },
            ran_ms: 0,
            peak_memory: None,
            explain: None,
        });
        self.reply_spawned();
        RunEnd {
            class: ExitClass::SpawnFailed { reason },
            ran: Duration::ZERO,
            interrupt: None,
            spawned: true,
        }
    }

    fn mark_ready(&self, gpu_guard: &mut Option<OwnedMutexGuard<()>>) {
        // Dropping the guard lets the next replica on this GPU start.
        gpu_guard.take();
        self.set(|s| s.ready = true);
    }

    async fn run_once(&mut self) -> RunEnd {
        let mut gpu_guard = match self.acquire_gpu().await {
            Ok(g) => g,
            Err(interrupt) => {
                return RunEnd {
                    class: ExitClass::Stopped,
                    ran: Duration::ZERO,
                    interrupt: Some(interrupt),
                    spawned: false,
                }
            }
        };
        let cgroup = match self.ctx.cgroups.create(&self.inst.name, &self.limits()) {
            Ok(g) => g,
            Err(e) => return self.spawn_failed(format!("{e}")),
        };
        let (read_end, write_end) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
            Ok(p) => p,
            Err(e) => return self.spawn_failed(format!("cannot create the output pipe: {e}")),
        };
        let mut env = self.inst.env.clone();
        env.insert("STEWARD_SERVICE".into(), self.inst.name.clone());
        let notify_socket = if self.svc.notify {
            match notify::NotifySocket::bind(&self.unit) {
                Ok(sock) => {
                    env.insert("NOTIFY_SOCKET".into(), sock.env_value());
                    Some(sock)
                }
                Err(e) => {
                    return self.spawn_failed(format!("cannot create its NOTIFY_SOCKET: {e}"))
                }
            }
        } else {
            None
        };
        let mut cmd = match spawn::build(
            &self.svc,
            self.inst.cpus.as_deref(),
            &env,
            &self.unit,
            cgroup.as_ref(),
            write_end,
        ) {
            Ok(c) => c,
            Err(reason) => return self.spawn_failed(reason),
        };
        let spawned = self.ctx.reaper.spawn(&mut cmd);
        // Our copies of the pipe's write end must close, or the log never sees EOF.
        drop(cmd);
        let (pid, mut exit_rx) = match spawned {
            Ok(x) => x,
            Err(e) => return self.spawn_failed(format!("cannot start {}: {e}", self.svc.argv[0])),
        };
        let started = Instant::now();
        output::pump(read_end, self.logs.clone(), self.inst.name.clone());
        let has_health = self.svc.health.is_some();
        // Without any readiness signal, a process is ready once it runs; on a GPU, once it
        // has run for gpu_settle (time to create its CUDA context).
        let ready_at_start = !self.svc.has_readiness() && self.inst.gpu.is_none();
        self.set(|s| {
            s.state = ServiceState::Running;
            s.pid = Some(pid as u32);
            s.started = Some((started, SystemTime::now()));
            s.cgroup = cgroup.clone();
            s.health = has_health.then_some(Health::Starting);
            s.health_error = None;
            s.ready = ready_at_start;
            s.waiting_on = None;
        });
        self.emit(EventKind::Started {
            pid: pid as u32,
            enforcement: Some(self.ctx.cgroups.enforcement()),
            gpu: self.inst.gpu.as_ref().map(|g| g.index),
        });
        self.reply_spawned();
        if ready_at_start {
            gpu_guard.take();
        }

        let soft_limit = match (&cgroup, self.svc.memory) {
            (None, Some(limit)) => Some(limit.bytes()),
            _ => None,
        };
        let mut watchdog = tokio::time::interval(WATCHDOG_PERIOD);
        let mut watchdog_peak: Option<u64> = None;
        let mut watchdog_killed = false;
        let mut killed_unhealthy = false;
        let mut interrupt = None;

        let settle = tokio::time::sleep(self.svc.gpu_settle.0);
        tokio::pin!(settle);
        let settle_armed = self.inst.gpu.is_some() && !self.svc.has_readiness();

        let mut tracker = self
            .svc
            .health
            .as_ref()
            .map(|c| HealthTracker::new(c, self.svc.liveness_failures, started));
        let (probe_tx, mut probe_rx) = mpsc::channel::<ProbeResult>(1);
        let mut probe_in_flight = false;
        let first_probe = self
            .svc
            .health
            .as_ref()
            .map_or(Duration::from_secs(3600), |c| c.start_interval.0);
        let probe_timer = tokio::time::sleep(first_probe);
        tokio::pin!(probe_timer);

        let reaped: Option<Reaped> = loop {
            tokio::select! {
                r = &mut exit_rx => break r.ok(),
                cmd = self.rx.recv() => match cmd {
                    Some(Control::Start(done)) => { let _ = done.send(()); }
                    Some(Control::Signal(sig)) => { let _ = killpg(Pid::from_raw(pid), sig); }
                    Some(Control::Stop(done)) => {
                        interrupt = Some(Interrupt::Stop(done));
                        break self.stop_process(pid, cgroup.as_ref(), &mut exit_rx).await;
                    }
                    Some(Control::Restart(done)) => {
                        interrupt = Some(Interrupt::Restart(done));
                        break self.stop_process(pid, cgroup.as_ref(), &mut exit_rx).await;
                    }
                    None => {
                        interrupt = Some(Interrupt::Shutdown);
                        break self.stop_process(pid, cgroup.as_ref(), &mut exit_rx).await;
                    }
                },
                _ = &mut settle, if settle_armed && gpu_guard.is_some() => self.mark_ready(&mut gpu_guard),
                msg = recv_notify(notify_socket.as_ref()) => {
                    if msg.lines().any(|l| l.trim() == "READY=1") && !self.shared.lock().map(|s| s.ready).unwrap_or(true) {
                        self.mark_ready(&mut gpu_guard);
                        if !has_health {
                            self.emit(EventKind::Health { state: "healthy".into(), error: Some("READY=1 on NOTIFY_SOCKET".into()) });
                        }
                    }
                }
                _ = &mut probe_timer, if tracker.is_some() && !probe_in_flight => {
                    probe_in_flight = true;
                    let (check, reaper, tx) = (self.svc.health.clone(), self.ctx.reaper.clone(), probe_tx.clone());
                    let penv = health::ProbeEnv { cwd: self.svc.cwd.clone(), env: env.clone() };
                    tokio::spawn(async move {
                        if let Some(check) = check {
                            let _ = tx.send(health::probe(&check, &reaper, &penv).await).await;
                        }
                    });
                }
                Some(result) = probe_rx.recv() => {
                    probe_in_flight = false;
                    let Some(t) = tracker.as_mut() else { continue };
                    let update = t.record(Instant::now(), result);
                    let (state, error) = (t.state, t.last_error.clone());
                    if let Some(check) = &self.svc.health {
                        let next = if state == Health::Healthy || self.shared.lock().map(|s| s.ready).unwrap_or(false) {
                            check.interval.0
                        } else {
                            check.start_interval.0
                        };
                        probe_timer.as_mut().reset(tokio::time::Instant::now() + next);
                    }
                    self.set(|s| { s.health = Some(state); s.health_error = error.clone(); });
                    if let Some(new) = update.changed {
                        self.emit(EventKind::Health { state: new.to_string(), error: error.clone() });
                        if new == Health::Healthy {
                            self.mark_ready(&mut gpu_guard);
                        } else if new == Health::Unhealthy && !self.svc.notify {
                            self.set(|s| s.ready = false);
                        }
                    }
                    if update.restart {
                        killed_unhealthy = true;
                        break self.stop_process(pid, cgroup.as_ref(), &mut exit_rx).await;
                    }
                }
                _ = watchdog.tick(), if soft_limit.is_some() => {
                    let rss: u64 = procfs::pids_with_marker(&self.unit).into_iter().filter_map(procfs::rss_bytes).sum();
                    watchdog_peak = Some(watchdog_peak.unwrap_or(0).max(rss));
                    if soft_limit.is_some_and(|limit| rss > limit) {
                        watchdog_killed = true;
                        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                        for p in procfs::pids_with_marker(&self.unit) {
                            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                        }
                    }
                }
            }
        };
        drop(gpu_guard);
        let ran = started.elapsed();
        let outcome = reaped.map_or(WaitOutcome::Signaled(libc::SIGKILL), |r| r.outcome);

        // Evidence is read before the group is emptied and removed.
        let evidence = Evidence {
            stop_requested: interrupt.is_some(),
            cgroup_oom_kills: cgroup.as_ref().map_or(0, ServiceCgroup::oom_kills),
            watchdog_killed,
            killed_unhealthy,
            memory_limit: self.svc.memory.map(|m| m.bytes()),
            memory_peak: cgroup
                .as_ref()
                .and_then(ServiceCgroup::memory_peak)
                .or(watchdog_peak.max(reaped.map(|r| r.max_rss))),
        };
        let class = classify(outcome, &evidence);
        let peak_memory = evidence.memory_peak;

        let strays = crate::cleanup::kill_strays(
            cgroup.as_ref(),
            &self.unit,
            self.svc.stop_signal.0,
            self.svc.stop_timeout.0,
        )
        .await;
        if !strays.is_empty() {
            self.emit(EventKind::StrayKilled {
                pids: strays.iter().map(|&p| p as u32).collect(),
            });
        }
        if let Some(g) = &cgroup {
            g.remove();
        }
        self.set(|s| {
            s.cgroup = None;
            s.health = None;
        });
        self.ctx.exited(&self.inst.name, &class);
        // Read the crash the way an on-call engineer would: the last of its output.
        let explain = if class.is_failure() && class != ExitClass::Stopped {
            // Give the log pump a moment to write the last of the output.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut text = self
                .logs
                .lock()
                .map(|l| l.tail(EXPLAIN_TAIL))
                .unwrap_or_default();
            // The kernel's view of the same minutes: an OOM kill, a segfault in libcuda, an Xid.
            let group = format!("steward-{}/{}", self.ctx.agent_id, self.inst.name);
            text.extend(crate::kmsg::recent(
                ran + Duration::from_secs(5),
                pid,
                &group,
            ));
            steward_explain::explain_text(&text).one_line()
        } else {
            None
        };
        self.set(|s| s.last_explain = explain.clone());
        self.emit(EventKind::Exited {
            pid: pid as u32,
            class: class.clone(),
            ran_ms: ran.as_millis() as u64,
            peak_memory,
            explain,
        });
        RunEnd {
            class,
            ran,
            interrupt,
            spawned: true,
        }
    }

    /// `stop_signal` to the process group and the cgroup, then SIGKILL after `stop_timeout`.
    async fn stop_process(
        &self,
        pid: i32,
        cgroup: Option<&ServiceCgroup>,
        exit_rx: &mut oneshot::Receiver<Reaped>,
    ) -> Option<Reaped> {
        let sig = self.svc.stop_signal.0;
        self.set(|s| s.state = ServiceState::Stopping);
        self.emit(EventKind::Stopping {
            signal: sig.as_str().to_string(),
        });
        let _ = killpg(Pid::from_raw(pid), sig);
        if let Some(g) = cgroup {
            g.kill_all(sig);
        }
        match tokio::time::timeout(self.svc.stop_timeout.0, &mut *exit_rx).await {
            Ok(r) => r.ok(),
            Err(_) => {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                if let Some(g) = cgroup {
                    g.kill_all(Signal::SIGKILL);
                }
                exit_rx.await.ok()
            }
        }
    }
}

/// The next datagram on the notify socket; never resolves when there is none.
async fn recv_notify(sock: Option<&notify::NotifySocket>) -> String {
    match sock {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

enum BackoffEnd {
    Elapsed,
    StartNow,
    Stop(oneshot::Sender<()>),
    Shutdown,
}
