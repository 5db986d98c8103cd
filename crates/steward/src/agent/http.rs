//! The agent's HTTP face, over its supervisor, its queue (once open) and its gateway.

use std::sync::{Arc, OnceLock};
use std::time::Duration;
use steward_api::{AgentInfo, ServiceStatus};
use steward_config::Config;
use steward_events::{Counts, Event};
use steward_gateway::GatewayState;
use steward_http::{GatewaySnapshot, GpuProcessMemory, ServiceAction};
use steward_queue::JobStore;
use steward_supervise::Supervisor;

pub struct AgentView {
    pub supervisor: Arc<Supervisor>,
    pub config: Arc<Config>,
    pub basics: super::control::AgentBasics,
    /// Set once the queue is open (at start, or when a shared queue first answers).
    pub store: Arc<OnceLock<Arc<dyn JobStore>>>,
    pub gateway: Arc<OnceLock<Arc<GatewayState>>>,
}

impl AgentView {
    pub fn new(
        supervisor: Arc<Supervisor>,
        config: Arc<Config>,
        basics: super::control::AgentBasics,
        store: Arc<OnceLock<Arc<dyn JobStore>>>,
        gateway: Arc<OnceLock<Arc<GatewayState>>>,
    ) -> Self {
        AgentView {
            supervisor,
            config,
            basics,
            store,
            gateway,
        }
    }
}

#[async_trait::async_trait]
impl steward_http::AgentView for AgentView {
    fn services(&self) -> Vec<ServiceStatus> {
        super::control::statuses(&self.supervisor, &self.basics)
    }

    fn agent(&self) -> AgentInfo {
        super::control::agent_info(&self.supervisor, &self.basics)
    }

    fn cgroup_mode(&self) -> String {
        self.supervisor.context().cgroups.enforcement().to_string()
    }

    fn counts(&self) -> Counts {
        self.supervisor.context().tally.snapshot()
    }

    fn gpu_processes(&self) -> Vec<GpuProcessMemory> {
        self.basics.gpus.processes()
    }

    fn queues(&self) -> Vec<String> {
        let mut queues: Vec<String> = Vec::new();
        for p in self.config.pipelines.values() {
            if !queues.contains(&p.queue) {
                queues.push(p.queue.clone());
            }
        }
        queues
    }

    fn store(&self) -> Option<Arc<dyn JobStore>> {
        self.store.get().cloned()
    }

    fn node_ttl(&self) -> Duration {
        self.config.node.ttl.0
    }

    fn gateway(&self) -> Option<GatewaySnapshot> {
        let g = self.gateway.get()?;
        Some(GatewaySnapshot {
            routes: serde_json::to_value(g.view()).unwrap_or_default(),
            metrics: g.metrics_text(),
        })
    }

    fn log_tail(&self, instance: &str, lines: usize) -> Result<String, String> {
        let dir = self.config.state_dir.service_logs(instance);
        if !dir.is_dir() {
            return Ok(String::new());
        }
        let mut out = Vec::new();
        steward_supervise::output::print_tail(&dir, Some(lines), &mut out)
            .map_err(|e| format!("cannot read the logs in {}: {e}", dir.display()))?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn recent_events(&self) -> Vec<Event> {
        self.supervisor.context().recent_events()
    }

    fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.supervisor.context().subscribe_events()
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.supervisor.changes()
    }

    async fn node(&self) -> serde_json::Value {
        let config = self.config.clone();
        let own: Vec<u32> = self
            .services()
            .iter()
            .flat_map(|s| s.processes.clone())
            .collect();
        tokio::task::spawn_blocking(move || node_report(&config, &own))
            .await
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
    }

    async fn act(&self, action: ServiceAction, name: &str) -> Result<(), String> {
        let done = match action {
            ServiceAction::Start => self.supervisor.start(name).await,
            ServiceAction::Stop => self.supervisor.stop(name).await,
            ServiceAction::Restart => self.supervisor.restart(name).await,
        };
        done.map_err(|e| e.to_string())
    }
}

/// `steward host --json` and `steward doctor --json` (without the DNS probe), as the
/// running agent sees them: its own processes' GPU memory is not someone else's.
fn node_report(config: &Config, own_pids: &[u32]) -> serde_json::Value {
    let facts = match crate::node::gather(None, &config.state_dir) {
        Ok(f) => f,
        Err(e) => return serde_json::json!({ "error": format!("{e:#}") }),
    };
    let plan = crate::node::plan(config, &facts).ok();
    let checks = steward_doctor::run(&steward_doctor::DoctorInputs {
        facts: &facts,
        config: Some(config),
        plan: plan.as_ref(),
        dns: None,
        own_pids,
    });
    serde_json::json!({ "host": facts, "doctor": checks })
}

/// Binds `[http]` when the config has it.
pub async fn bind(config: &Config) -> anyhow::Result<Option<steward_http::HttpListener>> {
    match &config.http {
        Some(h) => Ok(Some(
            steward_http::bind(h).await.map_err(anyhow::Error::msg)?,
        )),
        None => Ok(None),
    }
}
