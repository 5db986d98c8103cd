//! Everything `steward host` prints, gathered in one pass. A fact that cannot be read is
//! recorded as missing, with the reason, never a panic: a fixture root may hold only part
//! of a host.

use crate::{
    resolvers, zombies, CgroupFacts, CoreDumpFacts, CpuTopology, DiskFacts, GpuInventory, MemInfo,
    Sysroot, Zombie,
};
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct HostFacts {
    pub root: String,
    pub memory: Option<MemInfo>,
    pub cpu: Option<CpuTopology>,
    pub gpus: GpuInventory,
    pub cgroups: CgroupFacts,
    pub core_dumps: CoreDumpFacts,
    pub disk: Option<DiskFacts>,
    pub resolvers: Option<Vec<String>>,
    pub zombies: Vec<Zombie>,
    /// Whether this process may read the kernel's log (`/dev/kmsg`); `None` for a captured
    /// root, where it is not known.
    pub kernel_log: Option<Result<(), String>>,
    /// Facts that could not be read, each with why.
    pub missing: Vec<String>,
}

impl HostFacts {
    /// `state_dir` is where steward keeps its state; its filesystem's free space is read.
    pub fn gather(root: &Sysroot, state_dir: &Path) -> HostFacts {
        let mut missing = Vec::new();
        let memory = keep(MemInfo::read(root), "memory", &mut missing);
        let cpu = keep(CpuTopology::read(root), "cpu topology", &mut missing);
        let disk = keep(DiskFacts::read(root, state_dir), "disk", &mut missing);
        let resolvers = keep(resolvers(root), "dns resolvers", &mut missing);
        HostFacts {
            root: root.root().display().to_string(),
            memory,
            cpu,
            gpus: GpuInventory::discover(root),
            cgroups: CgroupFacts::read(root),
            core_dumps: CoreDumpFacts::read(root),
            disk,
            resolvers,
            zombies: zombies(root),
            kernel_log: root.is_live().then(|| {
                std::fs::File::open("/dev/kmsg")
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }),
            missing,
        }
    }
}

fn keep<T>(r: Result<T, crate::HostError>, what: &str, missing: &mut Vec<String>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            missing.push(format!("{what}: {e}"));
            None
        }
    }
}
