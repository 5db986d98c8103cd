//! The control plane of one state dir, and its wire format. An agent holds
//! [`StateDirLock`] and serves [`Request`]s on `steward.sock` (mode 0600) as JSON lines;
//! the CLI is a [`Client`]. The types on the socket ([`ServiceStatus`] and the rest) are
//! defined here, so that the runtime produces them and every reader shares them.

mod client;
mod gpu_memory;
mod lock;
mod protocol;
mod server;
mod status;

pub use client::Client;
pub use gpu_memory::{attribute_gpu_memory, GpuProcessMemory, ServiceGpuMemory};
pub use lock::{bind_socket, StateDirLock};
pub use protocol::{AgentInfo, PsReply, ReloadReport, Request, Response};
pub use server::{serve, Incoming};
pub use status::{awaited, Health, LastFinding, ServiceState, ServiceStatus};

use std::path::PathBuf;
use steward_config::StateDir;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no steward agent is running for {state_dir} (nothing answers on {}); start one with `steward up`", socket.display())]
    NoAgent {
        state_dir: StateDir,
        socket: PathBuf,
    },
    #[error("another steward agent{} already runs on the state dir {state_dir}; stop it with `steward down`, or give this one another state_dir", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    AlreadyRunning {
        pid: Option<u32>,
        state_dir: StateDir,
    },
    #[error("the socket path {} is {len} bytes, longer than a unix socket allows ({max}); set a shorter state_dir", path.display())]
    SocketPathTooLong {
        path: PathBuf,
        len: usize,
        max: usize,
    },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the agent sent a reply this steward cannot read: {0}")]
    BadReply(String),
    #[error("{0}")]
    Agent(String),
}
