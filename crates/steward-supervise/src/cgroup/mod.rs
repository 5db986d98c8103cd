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

mod v1;
mod v2;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use steward_events::Enforcement;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot create cgroup {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {value:?} to {}: {source}", path.display())]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Unavailable(String),
}

/// Limits to apply to one service's group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    pub memory: Option<u64>,
    /// Memory plus swap.
    pub memory_swap: Option<u64>,
    pub pids_max: Option<u32>,
    /// CPUs for the cpuset controller, where one is available (affinity is set anyway).
    pub cpus: Option<Vec<usize>>,
}

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
                let group = ServiceCgroup::from_dirs(vec![sub.clone()]);
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

/// The group (one folder per hierarchy) holding one run of a service.
#[derive(Debug, Clone)]
pub struct ServiceCgroup {
    /// The first is the memory group (v1) or the unified group (v2); others (v1 pids) follow.
    dirs: Vec<PathBuf>,
    version: Option<Enforcement>,
}

impl ServiceCgroup {
    fn from_dirs(dirs: Vec<PathBuf>) -> Self {
        ServiceCgroup {
            dirs,
            version: None,
        }
    }

    /// The `cgroup.procs` files a new process writes itself into before `exec`.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    pub fn dir(&self) -> &Path {
        &self.dirs[0]
    }

    /// OOM kills counted in this group.
    pub fn oom_kills(&self) -> u64 {
        let file = match self.version {
            Some(Enforcement::CgroupV1) => "memory.oom_control",
            _ => "memory.events",
        };
        fs::read_to_string(self.dir().join(file))
            .ok()
            .and_then(|t| keyed_value(&t, "oom_kill"))
            .unwrap_or(0)
    }

    /// The most memory this group has used.
    pub fn memory_peak(&self) -> Option<u64> {
        let file = match self.version {
            Some(Enforcement::CgroupV1) => "memory.max_usage_in_bytes",
            _ => "memory.peak",
        };
        read_u64(&self.dir().join(file))
    }

    pub fn memory_current(&self) -> Option<u64> {
        let file = match self.version {
            Some(Enforcement::CgroupV1) => "memory.usage_in_bytes",
            _ => "memory.current",
        };
        read_u64(&self.dir().join(file))
    }

    /// Every process in the group.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .dirs
            .iter()
            .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|t| {
                t.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<_>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Sends `sig` to every live process in the group; returns the pids signalled.
    pub fn kill_all(&self, sig: nix::sys::signal::Signal) -> Vec<i32> {
        let pids: Vec<i32> = self
            .pids()
            .into_iter()
            .filter(|&p| !crate::procfs::is_zombie(p))
            .collect();
        for &pid in &pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
        pids
    }

    /// Polls until no live process is left, or the deadline passes. Returns whether empty.
    pub fn wait_empty(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.pids().iter().all(|&p| crate::procfs::is_zombie(p)) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Removes the (empty) group.
    pub fn remove(&self) {
        for d in &self.dirs {
            let _ = fs::remove_dir(d);
        }
    }
}

/// Reads `key N` from a file of such lines (`memory.events`, `memory.oom_control`).
pub fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| CgroupError::Write {
            path: path.to_path_buf(),
            value: value.to_string(),
            source,
        })
}

/// Makes `dir` afresh: an empty group left by an earlier run is removed first.
fn fresh_dir(dir: &Path) -> Result<(), CgroupError> {
    if dir.exists() {
        let _ = fs::remove_dir(dir);
    }
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::Create {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// The path of our own group in one hierarchy, from `/proc/self/cgroup`
/// (`N:controllers:/path`; v2 is `0::/path`).
fn own_path<'a>(self_cgroup: &'a str, controller: Option<&str>) -> Option<&'a str> {
    self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = match controller {
            None => controllers.is_empty(),
            Some(c) => controllers.split(',').any(|x| x == c),
        };
        hit.then_some(path)
    })
}
