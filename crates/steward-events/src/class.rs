use serde::{Deserialize, Serialize};
use std::fmt;

/// How a process ended, decided from evidence (wait status, cgroup counters, what steward
/// itself did), never guessed from the exit code alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum ExitClass {
    /// The process exited by itself with this code.
    Exited { code: i32 },
    /// A signal ended it, and it was not an OOM kill or steward's own stop.
    Signaled { signal: i32, name: String },
    /// The memory limit was hit: the kernel's OOM killer (counted in the cgroup), or
    /// steward's RSS watchdog where no cgroup could be used.
    OomKilled {
        limit: Option<u64>,
        peak: Option<u64>,
        source: OomSource,
    },
    /// It ran past its time limit (a queue job's `timeout`).
    TimedOut,
    /// Its health checks failed and steward killed it.
    KilledUnhealthy,
    /// It never started: the program was missing, not executable, or a limit could not be
    /// applied.
    SpawnFailed { reason: String },
    /// steward stopped it on request.
    Stopped,
    /// A queue job's lease ran out: its worker stopped heartbeating (or the agent died).
    LeaseExpired,
    /// A lease-mode worker reported that the job failed (its process is fine).
    Reported { error: String },
    /// Its pipeline completed nothing for `stall_timeout` and, with `on_stall = "restart"`,
    /// steward killed it (per-job) or restarted its replica (lease).
    Stalled,
    /// Its running output showed a fatal signature (a lost CUDA context, a dead engine),
    /// and steward restarted it.
    FatalFinding { category: String, line: String },
}

/// Who enforced a memory limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OomSource {
    /// The kernel, inside the service's cgroup: a hard limit.
    Kernel,
    /// steward's RSS watchdog: a soft limit, polled.
    Watchdog,
}

/// How a service's limits are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Enforcement {
    CgroupV2,
    CgroupV1,
    /// No cgroup could be used; memory is enforced by polling RSS.
    Soft,
}

impl fmt::Display for Enforcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Enforcement::CgroupV2 => "cgroup-v2",
            Enforcement::CgroupV1 => "cgroup-v1",
            Enforcement::Soft => "soft (rss watchdog)",
        })
    }
}

impl ExitClass {
    /// Whether this counts as a failure for `restart = "on-failure"`.
    pub fn is_failure(&self) -> bool {
        !matches!(self, ExitClass::Exited { code: 0 } | ExitClass::Stopped)
    }

    pub fn signaled(signal: i32) -> Self {
        let name = nix::sys::signal::Signal::try_from(signal)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| format!("signal {signal}"));
        ExitClass::Signaled { signal, name }
    }

    /// The class's name as `events.jsonl` and the metrics' `class` label have it.
    pub fn label(&self) -> &'static str {
        match self {
            ExitClass::Exited { .. } => "exited",
            ExitClass::Signaled { .. } => "signaled",
            ExitClass::OomKilled { .. } => "oom_killed",
            ExitClass::TimedOut => "timed_out",
            ExitClass::KilledUnhealthy => "killed_unhealthy",
            ExitClass::SpawnFailed { .. } => "spawn_failed",
            ExitClass::Stopped => "stopped",
            ExitClass::LeaseExpired => "lease_expired",
            ExitClass::Reported { .. } => "reported",
            ExitClass::Stalled => "stalled",
            ExitClass::FatalFinding { .. } => "fatal_finding",
        }
    }

    /// A short label for tables: `exit 1`, `SIGKILL`, `oom`, `spawn-failed`.
    pub fn short(&self) -> String {
        match self {
            ExitClass::Exited { code } => format!("exit {code}"),
            ExitClass::Signaled { name, .. } => name.clone(),
            ExitClass::OomKilled { .. } => "oom-killed".into(),
            ExitClass::TimedOut => "timed-out".into(),
            ExitClass::KilledUnhealthy => "unhealthy".into(),
            ExitClass::SpawnFailed { .. } => "spawn-failed".into(),
            ExitClass::Stopped => "stopped".into(),
            ExitClass::LeaseExpired => "lease-expired".into(),
            ExitClass::Reported { .. } => "reported".into(),
            ExitClass::Stalled => "stalled".into(),
            ExitClass::FatalFinding { category, .. } => format!("fatal: {category}"),
        }
    }
}

impl fmt::Display for ExitClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitClass::Exited { code } => write!(f, "exited with code {code}"),
            ExitClass::Signaled { name, .. } => write!(f, "killed by {name}"),
            ExitClass::OomKilled {
                limit,
                peak,
                source,
            } => {
                let who = match source {
                    OomSource::Kernel => "OOM-killed by the kernel in its cgroup",
                    OomSource::Watchdog => "killed by steward's RSS watchdog (soft limit)",
                };
                write!(
                    f,
                    "{who}: peak {} against a limit of {}",
                    fmt_bytes(*peak),
                    fmt_bytes(*limit)
                )
            }
            ExitClass::TimedOut => f.write_str("killed after its timeout"),
            ExitClass::KilledUnhealthy => f.write_str("killed after failing its health checks"),
            ExitClass::SpawnFailed { reason } => write!(f, "failed to start: {reason}"),
            ExitClass::Stopped => f.write_str("stopped by steward"),
            ExitClass::LeaseExpired => f.write_str(
                "its lease expired (the worker stopped heartbeating, or the agent died)",
            ),
            ExitClass::Reported { error } => write!(f, "the worker reported a failure: {error}"),
            ExitClass::Stalled => f.write_str(
                "killed because its pipeline completed nothing for stall_timeout (on_stall = \"restart\")",
            ),
            ExitClass::FatalFinding { category, line } => {
                write!(f, "restarted after a fatal {category} in its output: {line}")
            }
        }
    }
}

/// `"512.00 MiB"`, or `"unknown"` where the number was not available: the one byte
/// formatter of steward ([`steward_config::ByteSize::binary`]).
pub fn fmt_bytes(bytes: Option<u64>) -> String {
    match bytes {
        None => "unknown".into(),
        Some(b) => steward_config::ByteSize(b).binary(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_is_tagged_by_class() {
        let c = ExitClass::OomKilled {
            limit: Some(64 << 20),
            peak: Some(64 << 20),
            source: OomSource::Kernel,
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            json,
            r#"{"class":"oom_killed","limit":67108864,"peak":67108864,"source":"kernel"}"#
        );
        assert_eq!(serde_json::from_str::<ExitClass>(&json).unwrap(), c);
        assert_eq!(ExitClass::signaled(9).to_string(), "killed by SIGKILL");
        assert!(!ExitClass::Exited { code: 0 }.is_failure());
        assert!(ExitClass::Exited { code: 3 }.is_failure());
    }
}
