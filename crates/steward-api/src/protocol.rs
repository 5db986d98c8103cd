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
}

impl Response {
    pub fn ok() -> Self {
        Response {
            ok: true,
            error: None,
            ps: None,
            agent: None,
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Response {
            ok: false,
            error: Some(message.into()),
            ps: None,
            agent: None,
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
}
