//! One run of one process, from spawn to the last byte of its output, the same for a
//! service's instance and for a job in a per-job pipeline slot:
//!
//! 1. [`Execution::spawn`]: a fresh cgroup with the limits, the output pipe, the command
//!    with every limit applied before `exec`, and the pump that copies its output to the log;
//! 2. [`Execution::exited`] resolves when the main process is reaped; [`Execution::stop`]
//!    and [`Execution::kill`] end it early;
//! 3. [`Execution::finish`] reads the evidence, classifies the end, kills what the main
//!    process left behind, removes the cgroup and waits for the pump, so that the output
//!    is whole before anyone reads it.

use crate::cgroup::{CgroupLimits, ServiceCgroup};
use crate::classify::{classify, Evidence, KilledBy, WaitOutcome};
use crate::context::SupervisorContext;
use crate::output::{pump, LogFiles, OnLogTrouble, Tail};
use crate::reaper::Reaped;
use crate::watchdog::SoftLimit;
use crate::{cleanup, procfs, spawn};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use steward_config::{escaped_os, Service};
use steward_events::{Event, EventKind, ExitClass};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The longest wait for the output pump after the last process is gone. Only a process
/// that escaped both the cgroup and the marker could hold the pipe open longer.
const PUMP_GRACE: Duration = Duration::from_secs(2);

/// Why a spawn failed, and whether trying again could help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnError {
    /// Written for the person reading `ps`.
    pub reason: String,
    /// It can never succeed as configured (no such program, not executable, a NUL byte, a
    /// working directory that is not one): restarting it would only loop.
    pub permanent: bool,
}

impl SpawnError {
    fn transient(reason: String) -> Self {
        SpawnError {
            reason,
            permanent: false,
        }
    }

    fn permanent(reason: String) -> Self {
        SpawnError {
            reason,
            permanent: true,
        }
    }

    /// From the error of `fork`/`exec` itself.
    fn of_exec(program: &str, e: &std::io::Error) -> Self {
        let reason = format!("cannot start {program}: {e}");
        let hopeless = matches!(
            e.kind(),
            std::io::ErrorKind::NotFound
                | std::io::ErrorKind::PermissionDenied
                | std::io::ErrorKind::InvalidInput
        ) || matches!(
            e.raw_os_error(),
            Some(libc::ENOEXEC | libc::E2BIG | libc::ENAMETOOLONG | libc::ENOTDIR | libc::ELOOP)
        );
        SpawnError {
            reason,
            permanent: hopeless,
        }
    }
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// What to run, and where its output goes.
pub struct Spec<'a> {
    /// The instance (`web`, `web#1`) or slot: it names the cgroup and the process marker.
    pub name: &'a str,
    /// Limits, working directory, `oom_score_adj`, core dumps.
    pub svc: &'a Service,
    /// What runs: bytes, not text (a job's input file may be named in any bytes).
    pub argv: &'a [OsString],
    pub cpus: Option<&'a [usize]>,
    /// The whole environment the config gives it (the marker is added).
    pub env: &'a BTreeMap<String, String>,
    pub logs: Arc<Mutex<LogFiles>>,
    /// Bytes of the latest output kept in memory for the end's report (0: none).
    pub keep_tail: usize,
    /// What kills processes left behind when the main one ends, and how long they get.
    pub strays: (Signal, Duration),
    /// Watch the output as it is written for causes and fatal signatures (services).
    pub watch_output: bool,
}

/// A process that runs (or ran) within its limits.
pub struct Execution {
    pid: i32,
    unit: String,
    program: String,
    started: Instant,
    started_wall: SystemTime,
    cgroup: Option<ServiceCgroup>,
    exit: oneshot::Receiver<Reaped>,
    /// Set once the main process has been reaped (`None` inside: the reaper went away).
    reaped: Option<Option<Reaped>>,
    pump: JoinHandle<()>,
    tail: Option<Tail>,
    /// What the output watch reports, while the process runs.
    findings: Option<tokio::sync::mpsc::UnboundedReceiver<Box<steward_explain::LiveFinding>>>,
    fatal_finding: Option<(String, String)>,
    memory_limit: Option<u64>,
    soft_limit: Option<SoftLimit>,
    strays: (Signal, Duration),
}

/// What [`Execution::watch`] saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Watched {
    Exited,
    OverSoftLimit,
    /// The output showed a cause (or a fatal signature) while the process runs.
    Finding(steward_explain::LiveFinding),
}

async fn next_finding(
    findings: &mut Option<tokio::sync::mpsc::UnboundedReceiver<Box<steward_explain::LiveFinding>>>,
) -> Option<Box<steward_explain::LiveFinding>> {
    match findings {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn over(soft_limit: &mut Option<SoftLimit>) {
    match soft_limit {
        Some(w) => w.exceeded().await,
        None => std::future::pending().await,
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Ended {
    pub pid: i32,
    pub class: ExitClass,
    pub ran: Duration,
    /// Its cgroup's peak, or the RSS watchdog's, or the main process's max RSS.
    pub peak_memory: Option<u64>,
    /// Processes left behind by the main process, and killed.
    pub strays: Vec<i32>,
    /// The last bytes of its output, when [`Spec::keep_tail`] asked for them.
    pub tail: Vec<u8>,
}

impl Execution {
    /// Starts `spec`.
    pub fn spawn(ctx: &SupervisorContext, spec: Spec<'_>) -> Result<Execution, SpawnError> {
        let svc = spec.svc;
        let limits = CgroupLimits {
            memory: svc.memory.map(|m| m.bytes()),
            memory_swap: svc.memory_swap.map(|m| m.bytes()),
            pids_max: svc.pids_max,
            cpus: spec.cpus.map(<[usize]>::to_vec),
        };
        let cgroup = ctx
            .cgroups
            .create(spec.name, &limits)
            .map_err(|e| SpawnError::transient(e.to_string()))?;
        let remove_group = |g: &Option<ServiceCgroup>| {
            if let Some(g) = g {
                g.remove();
            }
        };
        let (read_end, write_end) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
            Ok(p) => p,
            Err(e) => {
                remove_group(&cgroup);
                return Err(SpawnError::transient(format!(
                    "cannot create the output pipe: {e}"
                )));
            }
        };
        let unit = format!("{}/{}", ctx.agent_id, spec.name);
        let prepared =
            match spawn::prepare(svc, spec.argv, spec.cpus, spec.env, &unit, cgroup.as_ref()) {
                Ok(p) => p,
                Err(reason) => {
                    remove_group(&cgroup);
                    return Err(SpawnError::permanent(reason));
                }
            };
        // The launch owns the pipe's write end and closes it once the child has it, or
        // the log would never see its end.
        let spawned = ctx.reaper.launch(|| prepared.launch(write_end).start());
        let (pid, exit) = match spawned {
            Ok(x) => x,
            Err(e) => {
                remove_group(&cgroup);
                return Err(SpawnError::of_exec(&escaped_os(&spec.argv[0]), &e));
            }
        };
        let tail = (spec.keep_tail > 0).then(|| Tail::new(spec.keep_tail));
        let (events, name) = (ctx.events.clone(), spec.name.to_string());
        let on_trouble: OnLogTrouble = Arc::new(move |e: &std::io::Error| {
            let event = Event::new(
                Some(&name),
                EventKind::LogWriteFailed {
                    error: e.to_string(),
                },
            );
            let _ = events.append(&event);
        });
        let (findings, live) = if spec.watch_output {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            (Some(rx), Some((steward_explain::LiveWatch::new(), tx)))
        } else {
            (None, None)
        };
        let pump = pump(
            read_end,
            spec.logs,
            spec.name.to_string(),
            tail.clone(),
            Some(on_trouble),
            live,
        );
        let memory_limit = svc.memory.map(|m| m.bytes());
        // Without a cgroup, memory is enforced by polling the processes' RSS.
        let soft_limit = match (&cgroup, memory_limit) {
            (None, Some(limit)) => Some(SoftLimit::new(limit, unit.clone())),
            _ => None,
        };
        Ok(Execution {
            pid,
            unit,
            program: escaped_os(&spec.argv[0]),
            started: Instant::now(),
            started_wall: SystemTime::now(),
            cgroup,
            exit,
            reaped: None,
            pump,
            tail,
            findings,
            fatal_finding: None,
            memory_limit,
            soft_limit,
            strays: spec.strays,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    pub fn started(&self) -> (Instant, SystemTime) {
        (self.started, self.started_wall)
    }

    pub fn cgroup(&self) -> Option<&ServiceCgroup> {
        self.cgroup.as_ref()
    }

    /// Resolves once the main process has been reaped. Cancel-safe: a `select!` may drop
    /// it and call it again.
    pub async fn exited(&mut self) -> Option<Reaped> {
        if let Some(r) = self.reaped {
            return r;
        }
        let r = (&mut self.exit).await.ok();
        self.reaped = Some(r);
        r
    }

    /// Resolves when the main process has exited or, where no cgroup enforces `memory`,
    /// when the processes' RSS has passed it. Cancel-safe.
    pub async fn watch(&mut self) -> Watched {
        if self.reaped.is_some() {
            return Watched::Exited;
        }
        let Execution {
            exit,
            reaped,
            soft_limit,
            findings,
            ..
        } = self;
        tokio::select! {
            r = exit => {
                *reaped = Some(r.ok());
                Watched::Exited
            }
            _ = over(soft_limit) => Watched::OverSoftLimit,
            Some(f) = next_finding(findings) => Watched::Finding(*f),
        }
    }

    /// Sends `sig` to the main process's group only (a SIGHUP to reload, say).
    pub fn signal_group(&self, sig: Signal) {
        let _ = killpg(Pid::from_raw(self.pid), sig);
    }

    /// Sends `sig` to every process of the run: its process group, and every process in
    /// its cgroup (or, without one, that carries its marker).
    pub fn signal_all(&self, sig: Signal) {
        self.signal_group(sig);
        match &self.cgroup {
            Some(g) => {
                g.kill_all(sig);
            }
            None => {
                for p in procfs::pids_with_marker(&self.unit) {
                    let _ = kill(Pid::from_raw(p), sig);
                }
            }
        }
    }

    /// `sig` to every process, then SIGKILL once `timeout` has passed; returns when the
    /// main process has been reaped.
    pub async fn stop(&mut self, sig: Signal, timeout: Duration) -> Option<Reaped> {
        self.signal_all(sig);
        if let Ok(r) = tokio::time::timeout(timeout, self.exited()).await {
            return r;
        }
        self.kill().await
    }

    /// SIGKILL to every process; returns when the main process has been reaped.
    pub async fn kill(&mut self) -> Option<Reaped> {
        self.signal_all(Signal::SIGKILL);
        self.exited().await
    }

    /// Once the main process has ended: how it ended (`killed_by` says what steward did,
    /// if anything), with what it left behind killed, the cgroup removed and the output
    /// pumped to its end.
    /// The fatal finding the run is being ended for, so that its exit names it.
    pub fn ended_for(&mut self, finding: &steward_explain::LiveFinding) {
        self.fatal_finding = Some((finding.category.clone(), finding.line.clone()));
    }

    pub async fn finish(mut self, killed_by: Option<KilledBy>) -> Ended {
        let reaped = self.exited().await;
        let ran = self.started.elapsed();
        let outcome = reaped.map_or(WaitOutcome::Signaled(libc::SIGKILL), |r| r.outcome);
        // Evidence is read before the group is emptied and removed.
        let evidence = Evidence {
            killed_by,
            fatal_finding: self.fatal_finding.take(),
            cgroup_oom_kills: self.cgroup.as_ref().map_or(0, ServiceCgroup::oom_kills),
            memory_limit: self.memory_limit,
            memory_peak: self
                .cgroup
                .as_ref()
                .and_then(ServiceCgroup::memory_peak)
                .or(self
                    .soft_limit
                    .as_ref()
                    .and_then(SoftLimit::peak)
                    .max(reaped.map(|r| r.max_rss))),
        };
        let class = classify(outcome, &evidence);
        let (signal, timeout) = self.strays;
        let strays = cleanup::kill_strays(self.cgroup.as_ref(), &self.unit, signal, timeout).await;
        if let Some(g) = &self.cgroup {
            g.remove();
        }
        // Every writer of the pipe is gone now, so the pump reaches its end promptly.
        let _ = tokio::time::timeout(PUMP_GRACE, &mut self.pump).await;
        Ended {
            pid: self.pid,
            class,
            ran,
            peak_memory: evidence.memory_peak,
            strays,
            tail: self.tail.map(|t| t.bytes()).unwrap_or_default(),
        }
    }
}
