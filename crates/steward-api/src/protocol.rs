use crate::ServiceStatus;
use serde::{Deserialize, Serialize};

/// One request per line on the socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Ping,
    Ps,
    Start {
        service: String,
    },
    Stop {
        service: String,
    },
    Restart {
        service: String,
    },
    /// Re-read the config: check it as `up` would, then start new services, stop removed
    /// ones and restart changed ones; a bad config changes nothing.
    Reload,
    /// Stop every service, then end the agent.
    Down,
}

/// One reply line per request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ps: Option<PsReply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadReport>,
}

/// What a reload did, by service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub restarted: Vec<String>,
    pub unchanged: Vec<String>,
    /// Sections that changed but take an agent restart (`steward down` and `up`).
    pub not_applied: Vec<String>,
}

impl Response {
    pub fn ok() -> Self {
        Response {
            ok: true,
            error: None,
            ps: None,
            agent: None,
            reload: None,
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Response {
            ok: false,
            error: Some(message.into()),
            ps: None,
            agent: None,
            reload: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PsReply {
    pub agent: AgentInfo,
    pub services: Vec<ServiceStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub pid: u32,
    pub config: String,
    pub state_dir: String,
    /// How limits are enforced on this host, in one line.
    pub cgroups: String,
    pub uptime_ms: u64,
    /// Orphaned processes (not spawned by steward directly) that it reaped.
    pub orphans_reaped: u64,
    /// Why the kernel's log is not followed (OOM kills of children, Xid errors), when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_log: Option<String>,
}
