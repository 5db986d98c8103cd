//! cgroups: which version this host offers us, and one group per service.
//!
//! Order of preference, decided once at agent start:
//! 1. **v2**, when the memory controller can be enabled for child groups. That needs a
//!    delegated subtree: systemd `Delegate=yes`, or a container's PID 1 that moves itself
//!    into a leaf. Where other processes share our group, enabling it fails with EBUSY
//!    (see the H200 capture in `fixtures/h200-host/cgroup-v2-delegation.txt`).
//! 2. **v1**, the memory and pids hierarchies.
//! 3. **none**: limits become soft (an RSS watchdog), and steward says so.
//!
//! Each service gets a fresh group for each run, so its OOM counter and peak describe
//! that run alone.

mod error;
mod files;
mod group;
mod limits;
#[cfg(test)]
mod tests;
mod v1;
mod v2;

pub use error::CgroupError;
pub use group::{keyed_value, ServiceCgroup};
pub use limits::CgroupLimits;

use std::fs;
use std::path::{Path, PathBuf};
use steward_events::Enforcement;

/// Which cgroup mechanism this agent uses, and where its groups live.
#[derive(Debug, Clone)]
pub enum CgroupDriver {
    V2(v2::V2Base),
    V1(v1::V1Base),
    /// No usable cgroup: the reason, for `ps`, events and `doctor`.
    None {
        reason: String,
    },
}

impl CgroupDriver {
    /// Probes the live host. `agent_id` names this agent's subtree, so that two agents on
    /// different state dirs never touch each other's groups.
    pub fn detect(agent_id: &str) -> CgroupDriver {
        let self_cgroup = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        Self::detect_at(
            Path::new("/sys/fs/cgroup"),
            &self_cgroup,
            agent_id,
            std::process::id(),
        )
    }

    /// Probes a cgroup tree mounted at `mount_root` (a fake one in tests).
    pub fn detect_at(
        mount_root: &Path,
        self_cgroup: &str,
        agent_id: &str,
        pid: u32,
    ) -> CgroupDriver {
        let v2_reason = match v2::V2Base::setup(mount_root, self_cgroup, agent_id, pid) {
            Ok(base) => return CgroupDriver::V2(base),
            Err(e) => e.to_string(),
        };
        match v1::V1Base::setup(mount_root, self_cgroup, agent_id) {
            Ok(base) => CgroupDriver::V1(base),
            Err(e) => CgroupDriver::None {
                reason: format!("cgroup v2: {v2_reason}; cgroup v1: {e}"),
            },
        }
    }

    pub fn enforcement(&self) -> Enforcement {
        match self {
            CgroupDriver::V2(_) => Enforcement::CgroupV2,
            CgroupDriver::V1(_) => Enforcement::CgroupV1,
            CgroupDriver::None { .. } => Enforcement::Soft,
        }
    }

    /// One line for the agent's start event.
    pub fn describe(&self) -> String {
        match self {
            CgroupDriver::V2(b) => format!("cgroup v2 at {}", b.dir().display()),
            CgroupDriver::V1(b) => format!("cgroup v1 at {}", b.memory_dir().display()),
            CgroupDriver::None { reason } => format!("no cgroup, soft limits only ({reason})"),
        }
    }

    /// Makes a fresh group for one run of `name` with `limits` applied.
    pub fn create(
        &self,
        name: &str,
        limits: &CgroupLimits,
    ) -> Result<Option<ServiceCgroup>, CgroupError> {
        match self {
            CgroupDriver::V2(b) => b.create(name, limits).map(Some),
            CgroupDriver::V1(b) => b.create(name, limits).map(Some),
            CgroupDriver::None { .. } => Ok(None),
        }
    }

    /// Kills whatever an earlier agent on this state dir left in its groups (it died
    /// without stopping its services) and removes the groups. Returns the pids killed.
    pub fn kill_leftovers(&self) -> Vec<i32> {
        let dirs = match self {
            CgroupDriver::V2(b) => vec![b.dir().to_path_buf()],
            CgroupDriver::V1(b) => b.dirs(),
            CgroupDriver::None { .. } => return Vec::new(),
        };
        let mut killed = Vec::new();
        for dir in dirs {
            for sub in subgroups(&dir) {
                let group = ServiceCgroup::new(vec![sub.clone()], None);
                killed.extend(group.kill_all(nix::sys::signal::Signal::SIGKILL));
                group.wait_empty(std::time::Duration::from_secs(5));
                let _ = fs::remove_dir(&sub);
            }
        }
        killed.sort_unstable();
        killed.dedup();
        killed
    }

    /// Removes this agent's (empty) groups on the way out.
    pub fn cleanup(&self) {
        let dirs = match self {
            CgroupDriver::V2(b) => vec![b.dir().to_path_buf()],
            CgroupDriver::V1(b) => b.dirs(),
            CgroupDriver::None { .. } => return,
        };
        for dir in dirs {
            for sub in subgroups(&dir) {
                let _ = fs::remove_dir(sub);
            }
            let _ = fs::remove_dir(dir);
        }
        if let CgroupDriver::V2(b) = self {
            b.leave();
        }
    }
}

fn subgroups(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}
