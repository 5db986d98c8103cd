//! The agent's HTTP face, over its supervisor.

use std::sync::Arc;
use steward_api::ServiceStatus;
use steward_supervise::Supervisor;

pub struct SupervisorView(pub Arc<Supervisor>);

impl steward_http::AgentView for SupervisorView {
    fn services(&self) -> Vec<ServiceStatus> {
        self.0.status()
    }
}

/// Binds `[http]` when the config has it.
pub async fn bind(
    config: &steward_config::Config,
) -> anyhow::Result<Option<steward_http::HttpListener>> {
    match &config.http {
        Some(h) => Ok(Some(
            steward_http::bind(h).await.map_err(anyhow::Error::msg)?,
        )),
        None => Ok(None),
    }
}
