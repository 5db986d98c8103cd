//! The state dir and every path in it. One agent owns it at a time (it holds
//! `steward.lock`); the CLI reads it. Every part of steward names these paths through this
//! type, so the layout is written down once.

use serde::Serialize;
use std::path::{Path, PathBuf};

/// The default, relative to the config's folder.
pub const DEFAULT_STATE_DIR: &str = ".steward";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StateDir(PathBuf);

impl StateDir {
    /// The state dir at `path`, made absolute.
    pub fn new(path: impl AsRef<Path>) -> Self {
        let p = path.as_ref();
        StateDir(std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `events.jsonl`: every event, one JSON object per line.
    pub fn events(&self) -> PathBuf {
        self.0.join("events.jsonl")
    }

    /// `queue.db`: the embedded job queue.
    pub fn queue_db(&self) -> PathBuf {
        self.0.join("queue.db")
    }

    /// `backups/`: backups of `queue.db`.
    pub fn backups(&self) -> PathBuf {
        self.0.join("backups")
    }

    /// `steward.sock`: the agent's control socket (mode 0600).
    pub fn socket(&self) -> PathBuf {
        self.0.join("steward.sock")
    }

    /// `steward.lock`: held by the agent that owns the dir; holds its pid.
    pub fn lock(&self) -> PathBuf {
        self.0.join("steward.lock")
    }

    /// `progress.json`: where each pipeline stands.
    pub fn progress(&self) -> PathBuf {
        self.0.join("progress.json")
    }

    /// `logs/`: a folder per service (and per-job slot).
    pub fn logs(&self) -> PathBuf {
        self.0.join("logs")
    }

    /// `logs/<name>/`: one service's `output.log` and its rotated files.
    pub fn service_logs(&self, name: &str) -> PathBuf {
        self.logs().join(name)
    }

    /// A stable id of this state dir: it names the agent's cgroups (`steward-<id>`) and
    /// marks its processes (`STEWARD_UNIT=<id>/…`), so that a new agent (or `down`) finds
    /// what a crashed one left, and two agents never share groups.
    pub fn agent_id(&self) -> String {
        // FNV-1a: tiny, stable across Rust versions (unlike `DefaultHasher`).
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.0.as_os_str().as_encoded_bytes() {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{:012x}", hash & 0xffff_ffff_ffff)
    }

    /// `agent.log`: the log of an agent started with `up --detach`.
    pub fn agent_log(&self) -> PathBuf {
        self.0.join("agent.log")
    }
}

impl std::fmt::Display for StateDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.display())
    }
}
