//! What `ps` shows about a service: the same types on the control socket, in `--json`
//! output and (later) the HTTP API.

use serde::{Deserialize, Serialize};
use steward_events::{Enforcement, ExitClass};

/// A service's health, from its checks: compose's `starting`, `healthy`, `unhealthy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceState {
    /// Waiting to be started (or stopped by request).
    Stopped,
    /// Wanted, but waiting for a dependency or for its GPU; `waiting_on` says which.
    Waiting,
    Running,
    /// Exited and waiting out its backoff before the next start.
    Backoff,
    /// Exited too often within the crash-loop window; retried at the max backoff.
    CrashLoop,
    Stopping,
    /// Exited successfully and its restart policy does not restart it.
    Exited,
    /// Exited with a failure and its restart policy does not restart it.
    Failed,
}

impl std::fmt::Display for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServiceState::Stopped => "stopped",
            ServiceState::Waiting => "waiting",
            ServiceState::Running => "running",
            ServiceState::Backoff => "backoff",
            ServiceState::CrashLoop => "crash-loop",
            ServiceState::Stopping => "stopping",
            ServiceState::Exited => "exited",
            ServiceState::Failed => "failed",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The instance: `svc`, or `svc#i` for a replica.
    pub name: String,
    pub service: String,
    pub replica: u32,
    /// The GPU index it runs on.
    pub gpu: Option<u32>,
    pub state: ServiceState,
    pub pid: Option<u32>,
    /// RFC 3339 time the current process started.
    pub started_at: Option<String>,
    pub uptime_ms: Option<u64>,
    /// Restarts since the agent started.
    pub restarts: u32,
    pub last_exit: Option<ExitClass>,
    /// The latest exits, newest first, while in a crash loop.
    pub recent_exits: Vec<ExitClass>,
    /// When in backoff: how long until the next start.
    pub next_start_in_ms: Option<u64>,
    pub memory_used: Option<u64>,
    /// GPU memory its processes hold, summed over its GPUs (NVML's per-process list).
    #[serde(default)]
    pub gpu_memory_used: Option<u64>,
    /// CPU time its running processes have used (user and system), in seconds.
    #[serde(default)]
    pub cpu_seconds: Option<f64>,
    /// The CPUs it is pinned to (`0-3,8`), when the plan pinned it.
    #[serde(default)]
    pub cpus: Option<String>,
    /// The pids of its running processes (its group's, or those carrying its marker).
    #[serde(default)]
    pub processes: Vec<u32>,
    pub memory_limit: Option<u64>,
    pub enforcement: Enforcement,
    /// Present when the service has a health check.
    pub health: Option<Health>,
    pub last_health_error: Option<String>,
    /// Healthy, said READY=1, or (with neither) simply running.
    pub ready: bool,
    /// While waiting: the dependency or GPU it waits for.
    pub waiting_on: Option<String>,
    /// `explain`'s one-line reading of the last failure's output.
    #[serde(default)]
    pub last_explain: Option<String>,
    /// The latest cause (or fatal signature) seen in its output while it ran.
    #[serde(default)]
    pub last_finding: Option<LastFinding>,
}

/// A finding in a running service's output, as `ps` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastFinding {
    pub id: String,
    pub category: String,
    pub line: String,
    /// Occurrences in the run it was seen in.
    pub count: u64,
    pub fatal: bool,
    pub fix: String,
    /// RFC 3339 time of its latest report.
    pub at: String,
    pub age_ms: u64,
}

impl ServiceStatus {
    /// Up: it runs and is ready (healthy, said READY=1, or has no check), or it ran once
    /// and exited 0 under a policy that does not restart it.
    pub fn is_up(&self) -> bool {
        self.state == ServiceState::Exited || self.state == ServiceState::Running && self.ready
    }
}

/// The instances that should be up and are not yet, each with why, as people read it:
/// `api (model to be healthy)`. Empty when everything is up (systemd's READY=1, a
/// readiness probe's success).
pub fn awaited(statuses: &[ServiceStatus]) -> Vec<String> {
    statuses
        .iter()
        .filter(|s| !s.is_up())
        .map(|s| match (&s.waiting_on, s.state) {
            (Some(on), _) => format!("{} ({on})", s.name),
            (None, ServiceState::Running) => format!("{} (not ready yet)", s.name),
            (None, ServiceState::Waiting) => format!("{} (starting)", s.name),
            (None, state) => format!("{} ({state})", s.name),
        })
        .collect()
}
