//! One run's group: one folder per hierarchy (v1) or one unified folder (v2), with what
//! it counts (OOM kills, peak and current memory) and the processes in it.

use std::fs;
use std::path::{Path, PathBuf};
use steward_events::Enforcement;

/// The group (one folder per hierarchy) holding one run of a service.
#[derive(Debug, Clone)]
pub struct ServiceCgroup {
    /// The first is the memory group (v1) or the unified group (v2); others (v1 pids) follow.
    dirs: Vec<PathBuf>,
    version: Option<Enforcement>,
}

impl ServiceCgroup {
    /// A group in the given folders (the first is the memory or unified one), as the
    /// driver for `version` made it; `None`: found, not made (an earlier agent's).
    pub(super) fn new(dirs: Vec<PathBuf>, version: Option<Enforcement>) -> Self {
        ServiceCgroup { dirs, version }
    }

    /// The `cgroup.procs` files a new process writes itself into before `exec`.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    pub fn dir(&self) -> &Path {
        &self.dirs[0]
    }

    /// The group's one folder when it is a cgroup v2 group, which a process can be created
    /// in (`CLONE_INTO_CGROUP`).
    pub fn unified_dir(&self) -> Option<&Path> {
        (self.version == Some(Enforcement::CgroupV2) && self.dirs.len() == 1).then(|| self.dir())
    }

    /// OOM kills counted in this group.
    pub fn oom_kills(&self) -> u64 {
        let file = match self.version {
            Some(Enforcement::CgroupV1) => "memory.oom_control",
            _ => "memory.events",
        };
        crate::pseudo_file::read(self.dir().join(file))
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

    /// The processes of the run, read from its first group only: every process is put
    /// in all of the run's groups at spawn, so one list is enough for `ps` and a scrape.
    pub fn members(&self) -> Vec<i32> {
        crate::pseudo_file::read(self.dir().join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Every process in the group.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .dirs
            .iter()
            .filter_map(|d| crate::pseudo_file::read(d.join("cgroup.procs")))
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

    /// Sends `sig` to every live process in the group; returns the pids signalled. A
    /// SIGKILL to a cgroup v2 group goes through `cgroup.kill` (Linux 5.14): the kernel
    /// kills every process in it at once, so one that forks meanwhile cannot slip out.
    pub fn kill_all(&self, sig: nix::sys::signal::Signal) -> Vec<i32> {
        let pids: Vec<i32> = self
            .pids()
            .into_iter()
            .filter(|&p| !crate::procfs::is_zombie(p))
            .collect();
        if sig == nix::sys::signal::Signal::SIGKILL && self.version == Some(Enforcement::CgroupV2) {
            let kill = self.dir().join("cgroup.kill");
            if kill.exists() && fs::write(&kill, "1").is_ok() {
                return pids;
            }
        }
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
    crate::pseudo_file::read(path)?.trim().parse().ok()
}
