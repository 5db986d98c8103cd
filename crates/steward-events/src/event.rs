use crate::{Enforcement, ExitClass};
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// One line of `events.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// RFC 3339 UTC with milliseconds.
    pub ts: String,
    /// The service (or replica) it is about; absent for agent-wide events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    AgentStarted {
        pid: u32,
        config: String,
        cgroups: String,
    },
    AgentStopped,
    Started {
        pid: u32,
        enforcement: Option<Enforcement>,
        /// The GPU index it was started on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gpu: Option<u32>,
        /// Where this run's output begins in the service's log (bytes, over everything it
        /// ever printed there), for `explain SERVICE`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_at: Option<u64>,
    },
    /// Health changed: `starting`, `healthy` or `unhealthy` (`healthy` also when the
    /// process said READY=1).
    Health {
        state: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    Exited {
        pid: u32,
        #[serde(flatten)]
        class: ExitClass,
        /// How long it ran, in milliseconds.
        ran_ms: u64,
        /// The most memory it used (its cgroup's peak, or the main process's max RSS).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peak_memory: Option<u64>,
        /// For a failure: `explain`'s top finding in its output, on one line.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        explain: Option<String>,
    },
    /// Processes of the service that outlived its main process and were killed.
    StrayKilled {
        pids: Vec<u32>,
    },
    Restarting {
        delay_ms: u64,
        restarts: u32,
    },
    CrashLoop {
        exits: u32,
        window_ms: u64,
        last: Vec<ExitClass>,
    },
    Stopping {
        signal: String,
    },
    Stopped,
    /// A limit could not be applied as asked (for example, no cgroup): what is in effect.
    Limits {
        enforcement: Enforcement,
        note: String,
    },
    /// Processes left from an agent that died were found in its cgroups and killed.
    LeftoversKilled {
        pids: Vec<u32>,
    },
    /// A queue job's attempt failed; it is retried or, out of attempts, quarantined.
    JobFailed {
        job: i64,
        input: String,
        attempt: u32,
        #[serde(flatten)]
        class: ExitClass,
        error: String,
        quarantined: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        explain: Option<String>,
    },
    /// A service's output could not be written to its log (a full disk, say); what it
    /// prints is dropped until writing works again. Raised once per such burst.
    LogWriteFailed {
        error: String,
    },
    /// Leases of an agent that died (or that expired) were taken back.
    JobsRescued {
        jobs: Vec<i64>,
    },
    /// The kernel's OOM killer killed one of the service's processes (its main process or
    /// any child), as its log said.
    OomKill {
        pid: u32,
        command: String,
        /// The kernel's line naming the victim.
        #[serde(default)]
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rss: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u64>,
    },
    /// The output of a running process showed a cause, or a fatal signature. The first
    /// occurrence is said at once; a repeat once a minute with its count.
    Finding {
        id: String,
        category: String,
        line: String,
        /// Occurrences since the last such event.
        count: u64,
        /// Occurrences since the process started.
        total: u64,
        fatal: bool,
        /// What to do.
        explain: String,
    },
    /// The NVIDIA driver logged an Xid error (a GPU fault) in the kernel log.
    GpuXid {
        xid: u32,
        /// The GPU's UUID when the PCI id in the line matched one; else the PCI id itself.
        gpu: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<u32>,
        message: String,
        /// What the code means and what to do, when the code is known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        explain: Option<String>,
    },
    /// Nothing completed for `stall_timeout` while jobs were running.
    Stall {
        pipeline: String,
        idle_ms: u64,
        jobs: Vec<i64>,
        replicas: Vec<String>,
        /// Whether steward restarted those replicas (`on_stall = "restart"`).
        #[serde(default)]
        restarted: bool,
    },
}

impl Event {
    pub fn new(service: Option<&str>, kind: EventKind) -> Self {
        Self::at(SystemTime::now(), service, kind)
    }

    /// An event that happened at `at`.
    pub fn at(at: SystemTime, service: Option<&str>, kind: EventKind) -> Self {
        Event {
            ts: humantime::format_rfc3339_millis(at).to_string(),
            service: service.map(str::to_string),
            kind,
        }
    }

    /// A one-line human reading, for the agent's log.
    pub fn summary(&self) -> String {
        let who = self.service.as_deref().unwrap_or("agent");
        let what = match &self.kind {
            EventKind::AgentStarted {
                pid,
                config,
                cgroups,
            } => {
                format!("agent started (pid {pid}, config {config}, limits via {cgroups})")
            }
            EventKind::AgentStopped => "agent stopped".into(),
            EventKind::Started {
                pid,
                enforcement,
                gpu,
                ..
            } => {
                let gpu = gpu.map(|g| format!(", GPU {g}")).unwrap_or_default();
                match enforcement {
                    Some(e) => format!("started, pid {pid}{gpu}, limits {e}"),
                    None => format!("started, pid {pid}{gpu}"),
                }
            }
            EventKind::Health { state, error } => match error {
                Some(e) => format!("{state}: {e}"),
                None => state.clone(),
            },
            EventKind::Exited {
                pid, class, ran_ms, ..
            } => {
                format!("pid {pid} {class} after {:.1}s", *ran_ms as f64 / 1000.0)
            }
            EventKind::StrayKilled { pids } => {
                format!(
                    "killed {} process(es) left behind by the main process: {pids:?}",
                    pids.len()
                )
            }
            EventKind::Restarting { delay_ms, restarts } => {
                format!("restarting in {delay_ms} ms (restart #{restarts})")
            }
            EventKind::CrashLoop {
                exits,
                window_ms,
                last,
            } => format!(
                "crash loop: {exits} exits within {}s; last: {}; retrying at the max backoff",
                window_ms / 1000,
                last.iter()
                    .map(ExitClass::short)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            EventKind::Stopping { signal } => format!("stopping with {signal}"),
            EventKind::Stopped => "stopped".into(),
            EventKind::Limits { enforcement, note } => format!("limits {enforcement}: {note}"),
            EventKind::JobFailed { job, input, attempt, class, error, quarantined, .. } => {
                // The error often is the class in words ("killed by SIGSEGV"): said once.
                let class = class.to_string();
                let error = if class.contains(error.as_str()) {
                    String::new()
                } else {
                    format!(": {error}")
                };
                format!(
                    "job {job} ({input}) attempt {attempt} {class}{error}; {}",
                    if *quarantined { "quarantined" } else { "will retry" }
                )
            }
            EventKind::LogWriteFailed { error } => format!("cannot write its log ({error}); its output is dropped until this clears"),
            EventKind::JobsRescued { jobs } => format!("took back {} job lease(s) of an agent that is gone: {jobs:?}", jobs.len()),
            EventKind::Stall { pipeline, idle_ms, jobs, replicas, restarted } => format!(
                "pipeline {pipeline} stalled: nothing completed for {}s while jobs {jobs:?} ran on {}{}",
                idle_ms / 1000,
                replicas.join(", "),
                if *restarted { "; restarting them" } else { "" }
            ),
            EventKind::OomKill { pid, command, rss, limit, .. } => format!(
                "process {pid} ({command}) OOM-killed by the kernel in its cgroup: rss {} against a limit of {}",
                crate::fmt_bytes(*rss),
                crate::fmt_bytes(*limit)
            ),
            EventKind::Finding { category, line, count, total, fatal, .. } => format!(
                "{}{category} in its output ({count} since the last report, {total} in all): {line}",
                if *fatal { "fatal: " } else { "" }
            ),
            EventKind::GpuXid { xid, gpu, message, .. } => format!("GPU {gpu}: Xid {xid}: {message}"),
            EventKind::LeftoversKilled { pids } => {
                format!(
                    "killed {} process(es) left by an earlier agent: {pids:?}",
                    pids.len()
                )
            }
        };
        format!("{who}: {what}")
    }
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_says_each_thing_once() {
        let failed = |class: ExitClass, error: &str| {
            Event::new(
                Some("ocr"),
                EventKind::JobFailed {
                    job: 7,
                    input: "/in/a.pdf".into(),
                    attempt: 2,
                    class,
                    error: error.into(),
                    quarantined: true,
                    explain: None,
                },
            )
            .summary()
        };
        assert_eq!(
            failed(ExitClass::signaled(11), "killed by SIGSEGV"),
            "ocr: job 7 (/in/a.pdf) attempt 2 killed by SIGSEGV; quarantined"
        );
        let spawn = ExitClass::SpawnFailed {
            reason: "input /x cannot be resolved".into(),
        };
        assert_eq!(
            failed(spawn, "input /x cannot be resolved"),
            "ocr: job 7 (/in/a.pdf) attempt 2 failed to start: input /x cannot be resolved; quarantined"
        );
        assert!(failed(
            ExitClass::Exited { code: 0 },
            "exited 0 but its output /o is missing"
        )
        .contains("exited with code 0: exited 0 but its output /o is missing"));
    }
}
