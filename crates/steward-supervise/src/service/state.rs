//! An instance's state as its task keeps it. Only the task writes it (it holds the
//! sending half of a `watch`); `ps` and the dependents waiting on it read snapshots.

use crate::cgroup::ServiceCgroup;
use crate::procfs;
use std::time::{Instant, SystemTime};
use steward_api::{Health, ServiceState, ServiceStatus};
use steward_config::Service;
use steward_events::{Enforcement, ExitClass};
use steward_plan::Instance;

#[derive(Clone)]
pub(crate) struct TaskState {
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
    /// The latest finding in the running output, and when it was reported.
    /// Boxed: most instances never have one, and every instance's state is kept twice.
    pub last_finding: Option<Box<(steward_explain::LiveFinding, Instant, SystemTime)>>,
}

impl TaskState {
    pub fn new() -> Self {
        TaskState {
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
            last_finding: None,
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
        // Every process of the run: its group's, or those carrying its marker.
        let processes: Vec<i32> = match (&self.cgroup, running) {
            (_, false) => Vec::new(),
            (Some(g), true) => g.members(),
            (None, true) => procfs::pids_with_marker(unit),
        };
        let memory_used = match (&self.cgroup, running) {
            (_, false) => None,
            (Some(g), true) => g.memory_current(),
            (None, true) => Some(processes.iter().filter_map(|&p| procfs::rss_bytes(p)).sum()),
        };
        let cpu_seconds = running.then(|| {
            processes
                .iter()
                .filter_map(|&p| procfs::cpu_seconds(p))
                .sum()
        });
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
            cpu_seconds,
            gpu_memory_used: None,
            cpus: inst
                .cpus
                .clone()
                .map(|c| steward_config::CpuList(c).to_string()),
            processes: processes.iter().map(|&p| p as u32).collect(),
            memory_limit: svc.memory.map(|m| m.bytes()),
            enforcement,
            health: self.health,
            last_health_error: self.health_error.clone(),
            ready: self.ready,
            waiting_on: self.waiting_on.clone(),
            last_explain: self.last_explain.clone(),
            last_finding: self.last_finding.as_deref().map(|(f, at, wall)| {
                steward_api::LastFinding {
                    id: f.id.clone(),
                    category: f.category.clone(),
                    line: f.line.clone(),
                    count: f.total,
                    fatal: f.fatal,
                    fix: f.fix.clone(),
                    at: humantime::format_rfc3339_millis(*wall).to_string(),
                    age_ms: now.duration_since(*at).as_millis() as u64,
                }
            }),
        }
    }
}
