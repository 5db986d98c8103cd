//! One job as one process: the per-job pipeline mode. The process runs in its slot's
//! cgroup with the slot's limits, is killed (the whole group) at its timeout or when the
//! stall watchdog says so, and ends with the same classification a service would get.

use crate::classify::KilledBy;
use crate::context::SupervisorContext;
use crate::execution::{Execution, Spec, Watched};
use crate::output::LogFiles;
use nix::sys::signal::Signal;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use steward_config::Service;
use steward_events::ExitClass;
use steward_plan::Instance;

/// How much of a job's output is kept for its failure report.
pub const TAIL_BYTES: usize = 4096;

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
        argv: Vec<std::ffi::OsString>,
        kill: KillWhen<'_>,
        logs: &Arc<Mutex<LogFiles>>,
    ) -> JobRun {
        let mut env = inst.env.clone();
        env.insert("STEWARD_SERVICE".into(), slot.to_string());
        let spec = Spec {
            name: slot,
            svc,
            argv: &argv,
            cpus: inst.cpus.as_deref(),
            env: &env,
            logs: logs.clone(),
            keep_tail: TAIL_BYTES,
            watch_output: false,
            strays: (Signal::SIGKILL, Duration::from_secs(1)),
        };
        let mut exec = match Execution::spawn(self, spec) {
            Ok(e) => e,
            Err(e) => {
                return JobRun {
                    class: ExitClass::SpawnFailed { reason: e.reason },
                    ran: Duration::ZERO,
                    output_tail: String::new(),
                    peak_memory: None,
                }
            }
        };
        let killed_by = tokio::select! {
            w = exec.watch() => match w {
                // A job's output is explained at its end (its spec does not watch it).
                Watched::Exited | Watched::Finding(_) => None,
                Watched::OverSoftLimit => Some(KilledBy::Watchdog),
            },
            _ = tokio::time::sleep(kill.timeout) => Some(KilledBy::Timeout),
            _ = kill.stall.notified() => Some(KilledBy::Stall),
        };
        if killed_by.is_some() {
            exec.kill().await;
        }
        let ended = exec.finish(killed_by).await;
        JobRun {
            class: ended.class,
            ran: ended.ran,
            output_tail: String::from_utf8_lossy(&ended.tail).into_owned(),
            peak_memory: ended.peak_memory,
        }
    }
}
