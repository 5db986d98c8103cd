//! The rest of the node: cgroups, core dumps, disk, DNS resolvers and zombies.

use crate::{HostError, Sysroot};
use serde::Serialize;

/// What the cgroup setup allows steward to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupFacts {
    /// `v2`, `v1`, `hybrid` (v1 controllers plus an empty v2 mount) or `none`.
    pub version: String,
    /// This process's group (v2), or its memory group (v1).
    pub own_group: Option<String>,
    /// Controllers this process's group may hand to children (v2), or v1 hierarchies mounted.
    pub controllers: Vec<String>,
    /// Whether steward can get hard memory limits here, and if not, why.
    pub hard_limits: bool,
    pub why_not: Option<String>,
}

impl CgroupFacts {
    pub fn read(root: &Sysroot) -> CgroupFacts {
        let self_cgroup = root.read("/proc/self/cgroup").unwrap_or_default();
        let v2_own = self_cgroup
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(str::to_string);
        let v1_memory = self_cgroup.lines().find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctl, path) = (p.next()?, p.next()?, p.next()?);
            ctl.split(',')
                .any(|c| c == "memory")
                .then(|| path.to_string())
        });
        if root.path("/sys/fs/cgroup/cgroup.controllers").exists() {
            let own = v2_own.unwrap_or_else(|| "/".into());
            let group = format!(
                "/sys/fs/cgroup{}",
                if own == "/" {
                    String::new()
                } else {
                    own.clone()
                }
            );
            let controllers: Vec<String> = root
                .read(&format!("{group}/cgroup.controllers"))
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect();
            let subtree = root
                .read(&format!("{group}/cgroup.subtree_control"))
                .unwrap_or_default();
            let procs = root
                .read(&format!("{group}/cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .count();
            let writable = root.is_live() && writable(&root.path(&group));
            let why_not = if !controllers.iter().any(|c| c == "memory") {
                Some(format!("the memory controller is not delegated to {own}"))
            } else if subtree.split_whitespace().any(|c| c == "memory") {
                None
            } else if procs > 1 {
                Some(format!(
                    "{procs} processes share {own}, so the memory controller cannot be enabled for child groups (EBUSY)"
                ))
            } else if root.is_live() && !writable {
                Some(format!("{own} is not writable by this user"))
            } else {
                None
            };
            return CgroupFacts {
                version: "v2".into(),
                own_group: Some(own),
                controllers,
                hard_limits: why_not.is_none(),
                why_not,
            };
        }
        let mounted: Vec<String> = ["memory", "pids", "cpuset", "cpu"]
            .into_iter()
            .filter(|c| {
                root.path(&format!("/sys/fs/cgroup/{c}/cgroup.procs"))
                    .exists()
            })
            .map(str::to_string)
            .collect();
        if mounted.iter().any(|c| c == "memory") {
            let dir = root.path(&format!(
                "/sys/fs/cgroup/memory{}",
                v1_memory.clone().unwrap_or_default()
            ));
            let ok = !root.is_live() || writable(&dir);
            return CgroupFacts {
                version: if root.path("/sys/fs/cgroup/unified").exists() {
                    "hybrid"
                } else {
                    "v1"
                }
                .into(),
                own_group: v1_memory,
                controllers: mounted,
                hard_limits: ok,
                why_not: (!ok).then(|| format!("{} is not writable by this user", dir.display())),
            };
        }
        CgroupFacts {
            version: "none".into(),
            own_group: None,
            controllers: Vec::new(),
            hard_limits: false,
            why_not: Some("no cgroup memory controller is mounted".into()),
        }
    }
}

fn writable(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoreDumpFacts {
    pub pattern: Option<String>,
    /// The soft core-size limit of this process: `0`, a number of bytes, or `unlimited`.
    pub limit: Option<String>,
    /// Bytes under /var/lib/systemd/coredump, when it exists.
    pub systemd_coredump_bytes: Option<u64>,
}

impl CoreDumpFacts {
    pub fn read(root: &Sysroot) -> CoreDumpFacts {
        let limit = root.read("/proc/self/limits").ok().and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max core file size"))
                .and_then(|l| l.split_whitespace().nth(4).map(str::to_string))
        });
        let dir = root.path("/var/lib/systemd/coredump");
        CoreDumpFacts {
            pattern: root
                .read("/proc/sys/kernel/core_pattern")
                .ok()
                .map(|s| s.trim().to_string()),
            limit,
            systemd_coredump_bytes: dir.is_dir().then(|| dir_size(&dir)),
        }
    }

    /// Whether a crashing process here would write a core file.
    pub fn enabled(&self) -> bool {
        self.limit.as_deref().is_some_and(|l| l != "0")
    }
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DiskFacts {
    pub total: u64,
    pub free: u64,
    /// The state dir cannot be written: a read-only mount, or no write permission.
    pub read_only: bool,
}

/// In a fixture root, `steward-fixture/disk` (`TOTAL FREE [ro]`, sizes in bytes) stands
/// in for statvfs.
pub const DISK_FIXTURE: &str = "steward-fixture/disk";

impl DiskFacts {
    /// Space on the filesystem holding `path` (the state dir).
    pub fn read(root: &Sysroot, path: &std::path::Path) -> Result<DiskFacts, HostError> {
        if !root.is_live() {
            let text =
                std::fs::read_to_string(root.root().join(DISK_FIXTURE)).map_err(|source| {
                    HostError::Read {
                        path: root.root().join(DISK_FIXTURE),
                        source,
                    }
                })?;
            let words: Vec<&str> = text.split_whitespace().collect();
            return match words[..] {
                [total, free, ref rest @ ..] if rest.len() <= 1 => {
                    match (total.parse(), free.parse(), rest.first()) {
                        (Ok(total), Ok(free), None | Some(&"ro")) => Ok(DiskFacts {
                            total,
                            free,
                            read_only: !rest.is_empty(),
                        }),
                        _ => Err(HostError::Parse {
                            path: root.root().join(DISK_FIXTURE),
                            what: "expected TOTAL FREE [ro]".into(),
                        }),
                    }
                }
                _ => Err(HostError::Parse {
                    path: root.root().join(DISK_FIXTURE),
                    what: "expected TOTAL FREE [ro]".into(),
                }),
            };
        }
        let existing = path
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(std::path::Path::new("/"));
        let st = nix::sys::statvfs::statvfs(existing).map_err(|e| HostError::Read {
            path: existing.to_path_buf(),
            source: e.into(),
        })?;
        let frsize = st.fragment_size() as u64;
        // Root passes permission checks, not a read-only mount: ask both.
        let read_only = st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY)
            || nix::unistd::access(existing, nix::unistd::AccessFlags::W_OK).is_err();
        Ok(DiskFacts {
            total: st.blocks() as u64 * frsize,
            free: st.blocks_available() as u64 * frsize,
            read_only,
        })
    }
}

/// `nameserver` lines of `/etc/resolv.conf`.
pub fn resolvers(root: &Sysroot) -> Result<Vec<String>, HostError> {
    Ok(root
        .read("/etc/resolv.conf")?
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Zombie {
    pub pid: u32,
    pub ppid: u32,
    /// The parent's command name: who is not reaping.
    pub parent: String,
}

/// Every zombie under the root's `/proc`.
pub fn zombies(root: &Sysroot) -> Vec<Zombie> {
    let Ok(rd) = std::fs::read_dir(root.path("/proc")) else {
        return Vec::new();
    };
    let stat = |pid: &str| -> Option<(String, char, u32)> {
        let s = root.read(&format!("/proc/{pid}/stat")).ok()?;
        let (head, rest) = s.rsplit_once(')')?;
        let comm = head.split_once('(')?.1.to_string();
        let mut f = rest.split_whitespace();
        let state = f.next()?.chars().next()?;
        Some((comm, state, f.next()?.parse().ok()?))
    };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid: u32 = name.parse().ok()?;
            let (_, state, ppid) = stat(&name)?;
            (state == 'Z').then(|| Zombie {
                pid,
                ppid,
                parent: stat(&ppid.to_string())
                    .map(|s| s.0)
                    .unwrap_or_else(|| "?".into()),
            })
        })
        .collect()
}
