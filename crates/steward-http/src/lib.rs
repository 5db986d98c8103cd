//! The agent's HTTP face (`[http]`): `/health`, `/ready` and `/metrics`, answered from what the agent
//! sees through [`AgentView`], behind the token when one is set.

mod auth;
mod health;
mod metrics;
mod serve;

pub use health::health_reply;
pub use serve::{bind, serve, HttpListener};

use steward_api::ServiceStatus;

/// What the HTTP face reads from the agent.
pub trait AgentView: Send + Sync + 'static {
    /// Every instance's status, as `steward ps --json` has it.
    fn services(&self) -> Vec<ServiceStatus>;
}
