//! The agent's answers to the control socket's requests (other than `down`, which ends
//! the agent's loop).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use steward_api::{AgentInfo, PsReply, Request, Response};
use steward_config::StateDir;
use steward_supervise::Supervisor;

#[derive(Clone)]
pub(super) struct AgentBasics {
    pub config: PathBuf,
    pub state_dir: StateDir,
    pub started: Instant,
    /// Why the kernel's log is not followed, when it is not.
    pub kernel_log: Option<String>,
    pub gpus: std::sync::Arc<super::gpu_memory::GpuReader>,
}

/// Every instance's status, with its GPU memory.
pub(super) fn statuses(sup: &Supervisor, info: &AgentBasics) -> Vec<steward_api::ServiceStatus> {
    info.gpus.fill(sup.status())
}

/// The agent itself, as `ps` and the HTTP API show it.
pub(super) fn agent_info(sup: &Supervisor, info: &AgentBasics) -> AgentInfo {
    let ctx = sup.context();
    AgentInfo {
        pid: std::process::id(),
        config: info.config.display().to_string(),
        state_dir: info.state_dir.to_string(),
        cgroups: ctx.cgroups.describe(),
        uptime_ms: info.started.elapsed().as_millis() as u64,
        orphans_reaped: ctx.reaper.orphans_reaped(),
        kernel_log: info.kernel_log.clone(),
    }
}

pub(super) async fn handle(sup: &Arc<Supervisor>, info: &AgentBasics, req: Request) -> Response {
    let result = match req {
        Request::Ping => Ok(()),
        Request::Ps => {
            return Response {
                ps: Some(PsReply {
                    agent: agent_info(sup, info),
                    services: statuses(sup, info),
                }),
                ..Response::ok()
            };
        }
        Request::Start { service } => sup.start(&service).await,
        Request::Stop { service } => sup.stop(&service).await,
        Request::Restart { service } => sup.restart(&service).await,
        // Answered by the agent's loop.
        Request::Down | Request::Reload => Ok(()),
    };
    match result {
        Ok(()) => Response::ok(),
        Err(e) => Response::error(e.to_string()),
    }
}
