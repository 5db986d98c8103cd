//! cgroup v1: a memory group (with the OOM counter in `memory.oom_control`) and, when the
//! hierarchy is mounted, a pids group.

use super::error::CgroupError;
use super::files::{fresh_dir, own_path, write_file};
use super::group::ServiceCgroup;
use super::limits::CgroupLimits;
use std::fs;
use std::path::{Path, PathBuf};
use steward_events::Enforcement;

#[derive(Debug, Clone)]
pub struct V1Base {
    memory: PathBuf,
    pids: Option<PathBuf>,
    cpuset: Option<PathBuf>,
}

impl V1Base {
    pub(super) fn setup(
        mount_root: &Path,
        self_cgroup: &str,
        agent_id: &str,
    ) -> Result<Self, CgroupError> {
        let memory = base_dir(mount_root, self_cgroup, "memory", agent_id)?;
        // pids is a bonus: a host without it still gets hard memory limits.
        let pids = base_dir(mount_root, self_cgroup, "pids", agent_id).ok();
        // A new v1 cpuset group starts with no CPUs and no memory nodes; ours inherits
        // its parent's before any service group is made under it.
        let cpuset = base_dir(mount_root, self_cgroup, "cpuset", agent_id)
            .ok()
            .filter(|dir| {
                let parent = dir.parent().map(Path::to_path_buf).unwrap_or_default();
                ["cpuset.cpus", "cpuset.mems"].iter().all(|f| {
                    fs::read_to_string(parent.join(f))
                        .is_ok_and(|v| write_file(&dir.join(f), v.trim()).is_ok())
                })
            });
        Ok(V1Base {
            memory,
            pids,
            cpuset,
        })
    }

    pub fn memory_dir(&self) -> &Path {
        &self.memory
    }

    /// Every hierarchy's folder of this agent: memory, and pids and cpuset where mounted.
    pub(super) fn dirs(&self) -> Vec<PathBuf> {
        std::iter::once(self.memory.clone())
            .chain(self.pids.clone())
            .chain(self.cpuset.clone())
            .collect()
    }

    pub(super) fn create(
        &self,
        name: &str,
        limits: &CgroupLimits,
    ) -> Result<ServiceCgroup, CgroupError> {
        let mem = self.memory.join(name);
        fresh_dir(&mem)?;
        if let Some(limit) = limits.memory {
            write_file(&mem.join("memory.limit_in_bytes"), &limit.to_string())?;
            let memsw = mem.join("memory.memsw.limit_in_bytes");
            // Without swap accounting the file is absent and swap cannot be limited here.
            if let (Some(total), true) = (limits.memory_swap, memsw.exists()) {
                write_file(&memsw, &total.to_string())?;
            }
        }
        let mut dirs = vec![mem];
        if let Some(pids_base) = &self.pids {
            let dir = pids_base.join(name);
            fresh_dir(&dir)?;
            if let Some(max) = limits.pids_max {
                write_file(&dir.join("pids.max"), &max.to_string())?;
            }
            dirs.push(dir);
        } else if limits.pids_max.is_some() {
            return Err(CgroupError::Unavailable(
                "pids_max is set but the cgroup v1 pids hierarchy is not mounted".into(),
            ));
        }
        if let (Some(base), Some(cpus)) = (&self.cpuset, &limits.cpus) {
            let dir = base.join(name);
            fresh_dir(&dir)?;
            let mems = fs::read_to_string(base.join("cpuset.mems")).unwrap_or_default();
            write_file(&dir.join("cpuset.mems"), mems.trim())?;
            write_file(
                &dir.join("cpuset.cpus"),
                &steward_config::CpuList(cpus.clone()).to_string(),
            )?;
            dirs.push(dir);
        }
        Ok(ServiceCgroup::new(dirs, Some(Enforcement::CgroupV1)))
    }
}

fn base_dir(
    mount_root: &Path,
    self_cgroup: &str,
    controller: &str,
    agent_id: &str,
) -> Result<PathBuf, CgroupError> {
    let mount = mount_root.join(controller);
    if !mount.join("cgroup.procs").exists() {
        return Err(CgroupError::Unavailable(format!(
            "the {controller} hierarchy is not mounted at {}",
            mount.display()
        )));
    }
    let own = own_path(self_cgroup, Some(controller)).unwrap_or("/");
    let dir = mount
        .join(own.trim_start_matches('/'))
        .join(format!("steward-{agent_id}"));
    match fs::create_dir(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(dir),
        Err(source) => Err(CgroupError::Create { path: dir, source }),
    }
}
