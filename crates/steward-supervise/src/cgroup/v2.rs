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
        if !subtree.split_whitespace().any(|c| c == "memory") {
            // No internal processes: we must leave our group for a leaf before enabling
            // controllers for its children.
            let leaf = group.join("steward-agent");
            fresh_dir(&leaf)?;
            write_file(&leaf.join("cgroup.procs"), &pid.to_string())?;
            write_file(&group.join("cgroup.subtree_control"), &enable).map_err(|e| match e {
                CgroupError::Write { source, path, .. } if source.raw_os_error() == Some(libc::EBUSY) => {
                    CgroupError::Unavailable(format!(
                        "cannot enable the memory controller in {}: other processes share this group (EBUSY). \
                         Run steward under systemd with Delegate=yes, or as the container's PID 1",
                        path.parent().unwrap_or(&path).display()
                    ))
                }
                other => other,
            })?;
        }
        let dir = group.join(format!("steward-{agent_id}"));
        fresh_dir(&dir)?;
        write_file(&dir.join("cgroup.subtree_control"), &enable)?;
        Ok(V2Base { dir })
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
