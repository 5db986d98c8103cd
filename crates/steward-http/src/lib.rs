//! The agent's HTTP face (`[http]`): `/health` and `/ready` for probes, `/metrics` for
//! Prometheus, the JSON API under `/api/v1/` with its actions, the live event stream, and
//! the dashboard page that uses them, all answered from what the agent shows through
//! [`AgentView`], behind the token when one is set.

mod actions;
mod api;
mod auth;
mod family;
mod health;
mod jobs_metrics;
mod metrics;
mod page;
mod reply;
mod serve;
mod sse;

pub use health::health_reply;
pub use serve::{bind, serve, HttpListener};
pub use steward_api::{attribute_gpu_memory, GpuProcessMemory, ServiceGpuMemory};

use std::sync::Arc;
use steward_api::{AgentInfo, ServiceStatus};
use steward_events::{Counts, Event};
use steward_queue::JobStore;

/// What a button asks of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceAction {
    Start,
    Stop,
    Restart,
}

/// The gateway inside the agent, as the dashboard and `/metrics` see it.
#[derive(Debug, Clone)]
pub struct GatewaySnapshot {
    /// Its routes with their backends (`steward_gateway::RouteView`s).
    pub routes: serde_json::Value,
    /// Its series, in the OpenMetrics text format.
    pub metrics: String,
}

/// What the HTTP face reads from the agent, and asks of it.
#[async_trait::async_trait]
pub trait AgentView: Send + Sync + 'static {
    /// Every instance's status, as `steward ps --json` has it.
    fn services(&self) -> Vec<ServiceStatus>;
    /// The agent itself, as `steward ps --json` has it.
    fn agent(&self) -> AgentInfo;
    /// How limits are enforced: `cgroup-v2`, `cgroup-v1` or `soft (rss watchdog)`.
    fn cgroup_mode(&self) -> String;
    /// The counters kept from events and job outcomes.
    fn counts(&self) -> Counts;
    /// Every process holding GPU memory on this node (NVML's per-process list).
    fn gpu_processes(&self) -> Vec<GpuProcessMemory>;
    /// The queues the agent's pipelines use, in config order.
    fn queues(&self) -> Vec<String>;
    /// The queue, once it is open.
    fn store(&self) -> Option<Arc<dyn JobStore>>;
    /// How long a node may miss heartbeats before the fleet view calls it gone.
    fn node_ttl(&self) -> std::time::Duration;
    fn gateway(&self) -> Option<GatewaySnapshot>;
    /// The last `lines` lines of an instance's output; `Err` says why not.
    fn log_tail(&self, instance: &str, lines: usize) -> Result<String, String>;
    /// The latest events, oldest first.
    fn recent_events(&self) -> Vec<Event>;
    fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<Event>;
    /// Changes at every state change of any instance.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
    /// The node's facts and the doctor's checks (`steward host --json`, `doctor --json`).
    async fn node(&self) -> serde_json::Value;
    /// Starts, stops or restarts an instance or a whole service.
    async fn act(&self, action: ServiceAction, name: &str) -> Result<(), String>;
}
