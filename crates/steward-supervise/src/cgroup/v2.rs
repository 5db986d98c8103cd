//! cgroup v2: one unified group per service, with `memory.max`, `memory.swap.max` and
//! `pids.max`, the OOM counter in `memory.events` and the peak in `memory.peak`.

use super::error::CgroupError;
use super::files::{fresh_dir, own_path, write_file};
use super::group::ServiceCgroup;
use super::limits::CgroupLimits;
use std::fs;
use std::path::{Path, PathBuf};
use steward_events::Enforcement;

#[derive(Debug, Clone)]
pub struct V2Base {
    /// `<our group>/steward-<id>`: services are made below it.
    dir: PathBuf,
    /// Where the agent moved itself out of (into `steward-agent` below it), and the
    /// controllers it enabled there, so that leaving puts both back.
    moved: Option<Moved>,
}

#[derive(Debug, Clone)]
struct Moved {
    group: PathBuf,
    enabled: String,
    pid: u32,
}

impl V2Base {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn setup(
        mount_root: &Path,
        self_cgroup: &str,
        agent_id: &str,
        pid: u32,
    ) -> Result<Self, CgroupError> {
        let mount = if mount_root.join("cgroup.controllers").exists() {
            mount_root.to_path_buf()
        } else if mount_root.join("unified/cgroup.controllers").exists() {
            mount_root.join("unified")
        } else {
            return Err(CgroupError::Unavailable("no cgroup2 mount".into()));
        };
        let own = own_path(self_cgroup, None).unwrap_or("/");
        let group = mount.join(own.trim_start_matches('/'));
        let available = fs::read_to_string(group.join("cgroup.controllers")).unwrap_or_default();
        if !available.split_whitespace().any(|c| c == "memory") {
            return Err(CgroupError::Unavailable(format!(
                "the memory controller is not delegated to {} (it offers: {})",
                group.display(),
                if available.trim().is_empty() {
                    "none"
                } else {
                    available.trim()
                }
            )));
        }
        let wanted: Vec<&str> = ["memory", "pids", "cpuset"]
            .into_iter()
            .filter(|c| available.split_whitespace().any(|a| a == *c))
            .collect();
        let enable = wanted
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ");

        let subtree = fs::read_to_string(group.join("cgroup.subtree_control")).unwrap_or_default();
        let mut moved = None;
        if !subtree.split_whitespace().any(|c| c == "memory") {
            // No internal processes: we must leave our group for a leaf before enabling
            // controllers for its children. Only our own pid moves, never another's.
            let leaf = group.join("steward-agent");
            fresh_dir(&leaf)?;
            write_file(&leaf.join("cgroup.procs"), &pid.to_string())?;
            let enabled = write_file(&group.join("cgroup.subtree_control"), &enable);
            if let Err(e) = enabled {
                // Back where we were, and no empty leaf left behind.
                let _ = write_file(&group.join("cgroup.procs"), &pid.to_string());
                let _ = fs::remove_dir(&leaf);
                return Err(match e {
                    CgroupError::Write { source, path, .. } if source.raw_os_error() == Some(libc::EBUSY) => {
                        CgroupError::Unavailable(format!(
                            "cannot enable the memory controller in {}: other processes share this group (EBUSY). \
                             Run steward under systemd with Delegate=yes, or as the container's PID 1",
                            path.parent().unwrap_or(&path).display()
                        ))
                    }
                    other => other,
                });
            }
            moved = Some(Moved {
                group: group.clone(),
                enabled: wanted
                    .iter()
                    .map(|c| format!("-{c}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                pid,
            });
        }
        let dir = group.join(format!("steward-{agent_id}"));
        fresh_dir(&dir)?;
        write_file(&dir.join("cgroup.subtree_control"), &enable)?;
        Ok(V2Base { dir, moved })
    }

    /// On the way out, once every service group is gone: the controllers the agent
    /// enabled are disabled again and it moves back into the group it came from, leaving
    /// that group as it found it (its `steward-agent` leaf removed). Where other groups
    /// have appeared beside ours meanwhile, the controllers stay on for them.
    pub(super) fn leave(&self) {
        let Some(m) = &self.moved else { return };
        let others = fs::read_dir(&m.group)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .any(|e| e.file_name() != "steward-agent")
            })
            .unwrap_or(true);
        if others {
            return;
        }
        let _ = write_file(&m.group.join("cgroup.subtree_control"), &m.enabled);
        if write_file(&m.group.join("cgroup.procs"), &m.pid.to_string()).is_ok() {
            let _ = fs::remove_dir(m.group.join("steward-agent"));
        }
    }

    pub(super) fn create(
        &self,
        name: &str,
        limits: &CgroupLimits,
    ) -> Result<ServiceCgroup, CgroupError> {
        let dir = self.dir.join(name);
        fresh_dir(&dir)?;
        if let Some(limit) = limits.memory {
            write_file(&dir.join("memory.max"), &limit.to_string())?;
            let swap = limits.memory_swap.unwrap_or(limit).saturating_sub(limit);
            let swap_file = dir.join("memory.swap.max");
            if swap_file.exists() {
                write_file(&swap_file, &swap.to_string())?;
            }
            // Kill the whole group on OOM: a half-killed worker (the dataloader gone, the
            // main loop alive) is worse than a clean restart.
            let group_oom = dir.join("memory.oom.group");
            if group_oom.exists() {
                write_file(&group_oom, "1")?;
            }
        }
        if let Some(max) = limits.pids_max {
            write_file(&dir.join("pids.max"), &max.to_string())?;
        }
        if let Some(cpus) = &limits.cpus {
            let file = dir.join("cpuset.cpus");
            if file.exists() {
                write_file(&file, &steward_config::CpuList(cpus.clone()).to_string())?;
            }
        }
        Ok(ServiceCgroup::new(vec![dir], Some(Enforcement::CgroupV2)))
    }
}
