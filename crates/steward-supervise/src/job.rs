//! One job as one process: the per-job pipeline mode. The process runs in its slot's
//! cgroup with the slot's limits, is killed (the whole group) at its timeout, and ends with
//! the same classification a service would get.

use crate::cgroup::{CgroupLimits, ServiceCgroup};
use crate::classify::{classify, Evidence, WaitOutcome};
use crate::output::{self, LogFiles, Tail};
use crate::{spawn, SupervisorContext};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use steward_config::Service;
use steward_events::ExitClass;
use steward_plan::Instance;

/// How a job's process ended.
#[derive(Debug, Clone)]
pub struct JobRun {
    pub class: ExitClass,
    pub ran: Duration,
    /// The last few KiB of its output (stdout and stderr together).
    pub output_tail: String,
    pub peak_memory: Option<u64>,
}

/// When steward kills a job's process: at its `timeout`, or when `stall` is notified
/// (the stall watchdog, `on_stall = "restart"`).
pub struct KillWhen<'a> {
    pub timeout: Duration,
    pub stall: &'a tokio::sync::Notify,
}

impl SupervisorContext {
    /// Runs `argv` once in `slot` (a replica of `inst`), with the replica's limits, CPUs and
    /// environment; kills it as `kill` says.
    pub async fn run_job(
        &self,
        inst: &Instance,
        svc: &Service,
        slot: &str,
        argv: Vec<String>,
        kill: KillWhen<'_>,
        logs: &Arc<Mutex<LogFiles>>,
    ) -> JobRun {
        let failed = |reason: String| JobRun {
            class: ExitClass::SpawnFailed { reason },
            ran: Duration::ZERO,
            output_tail: String::new(),
            peak_memory: None,
        };
        let limits = CgroupLimits {
            memory: svc.memory.map(|m| m.bytes()),
            memory_swap: svc.memory_swap.map(|m| m.bytes()),
            pids_max: svc.pids_max,
            cpus: inst.cpus.clone(),
        };
        let cgroup = match self.cgroups.create(slot, &limits) {
            Ok(g) => g,
            Err(e) => return failed(e.to_string()),
        };
        let (read_end, write_end) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
            Ok(p) => p,
            Err(e) => return failed(format!("cannot create the output pipe: {e}")),
        };
        let unit = format!("{}/{slot}", self.agent_id);
        let mut job_svc = svc.clone();
        job_svc.argv = argv;
        let mut env = inst.env.clone();
        env.insert("STEWARD_SERVICE".into(), slot.to_string());
        let mut cmd = match spawn::build(
            &job_svc,
            inst.cpus.as_deref(),
            &env,
            &unit,
            cgroup.as_ref(),
            write_end,
        ) {
            Ok(c) => c,
            Err(reason) => return failed(reason),
        };
        let spawned = self.reaper.spawn(&mut cmd);
        drop(cmd);
        let (pid, exit_rx) = match spawned {
            Ok(x) => x,
            Err(e) => return failed(format!("cannot start {}: {e}", job_svc.argv[0])),
        };
        let started = Instant::now();
        let tail: Tail = Arc::new(Mutex::new(Default::default()));
        let pump =
            output::pump_with_tail(read_end, logs.clone(), slot.to_string(), Some(tail.clone()));
        tokio::pin!(exit_rx);
        // Killed by steward: at its timeout, or when the stall watchdog says so.
        let killed = tokio::select! {
            r = &mut exit_rx => Err(r.ok()),
            _ = tokio::time::sleep(kill.timeout) => Ok(ExitClass::TimedOut),
            _ = kill.stall.notified() => Ok(ExitClass::Stalled),
        };
        let (reaped, killed) = match killed {
            Err(reaped) => (reaped, None),
            Ok(class) => {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                if let Some(g) = &cgroup {
                    g.kill_all(Signal::SIGKILL);
                }
                (exit_rx.await.ok(), Some(class))
            }
        };
        let ran = started.elapsed();
        let evidence = Evidence {
            cgroup_oom_kills: cgroup.as_ref().map_or(0, ServiceCgroup::oom_kills),
            memory_limit: svc.memory.map(|m| m.bytes()),
            memory_peak: cgroup
                .as_ref()
                .and_then(ServiceCgroup::memory_peak)
                .or(reaped.map(|r| r.max_rss)),
            ..Default::default()
        };
        let outcome = reaped.map_or(WaitOutcome::Signaled(libc::SIGKILL), |r| r.outcome);
        let class = killed.unwrap_or_else(|| classify(outcome, &evidence));
        crate::cleanup::kill_strays(
            cgroup.as_ref(),
            &unit,
            Signal::SIGKILL,
            Duration::from_secs(1),
        )
        .await;
        if let Some(g) = &cgroup {
            g.remove();
        }
        // The output may still be in the pipe; wait a little for the last of it.
        let _ = tokio::time::timeout(Duration::from_millis(500), pump).await;
        let bytes: Vec<u8> = tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        JobRun {
            class,
            ran,
            output_tail: String::from_utf8_lossy(&bytes).into_owned(),
            peak_memory: evidence.memory_peak,
        }
    }
}
