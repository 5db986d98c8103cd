//! CPU topology from sysfs: which logical CPUs are hyper-thread siblings (one core), which
//! share an L3 (a CCX on AMD), which NUMA node each is in, and which this process may use.

use crate::{cpulist, HostError, Sysroot};
use serde::Serialize;
use std::collections::BTreeMap;

/// One physical core: its hyper-thread siblings, always placed together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Core {
    /// Logical CPUs of this core, lowest first.
    pub cpus: Vec<usize>,
    pub numa_node: u32,
    /// Index into [`CpuTopology::l3_groups`].
    pub l3_group: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuTopology {
    pub online: Vec<usize>,
    /// From `Cpus_allowed_list` of this process.
    pub allowed: Vec<usize>,
    pub cores: Vec<Core>,
    /// The CPU sets that share an L3 cache.
    pub l3_groups: Vec<Vec<usize>>,
    /// NUMA node -> its CPUs.
    pub numa_nodes: BTreeMap<u32, Vec<usize>>,
}

impl CpuTopology {
    pub fn read(root: &Sysroot) -> Result<CpuTopology, HostError> {
        let list = |abs: &str| -> Result<Vec<usize>, HostError> {
            let text = root.read(abs)?;
            cpulist::parse(text.trim()).map_err(|what| HostError::Parse {
                path: root.path(abs),
                what,
            })
        };
        let online = list("/sys/devices/system/cpu/online")?;
        let allowed = root
            .read("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .and_then(|v| cpulist::parse(v.trim()).ok())
            })
            .unwrap_or_else(|| online.clone());

        let mut numa_nodes = BTreeMap::new();
        if let Ok(rd) = std::fs::read_dir(root.path("/sys/devices/system/node")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(n) = name
                    .strip_prefix("node")
                    .and_then(|n| n.parse::<u32>().ok())
                {
                    if let Ok(cpus) = list(&format!("/sys/devices/system/node/{name}/cpulist")) {
                        numa_nodes.insert(n, cpus);
                    }
                }
            }
        }
        if numa_nodes.is_empty() {
            numa_nodes.insert(0, online.clone());
        }

        let mut l3_groups: Vec<Vec<usize>> = Vec::new();
        let mut cores: Vec<Core> = Vec::new();
        for &cpu in &online {
            let base = format!("/sys/devices/system/cpu/cpu{cpu}");
            let siblings = list(&format!("{base}/topology/thread_siblings_list"))
                .unwrap_or_else(|_| vec![cpu]);
            let l3 = l3_of(root, &base).unwrap_or_else(|| online.clone());
            let l3_group = match l3_groups.iter().position(|g| *g == l3) {
                Some(i) => i,
                None => {
                    l3_groups.push(l3);
                    l3_groups.len() - 1
                }
            };
            if cores.iter().any(|c| c.cpus.contains(&cpu)) {
                continue;
            }
            let numa_node = numa_nodes
                .iter()
                .find(|(_, cpus)| cpus.contains(&cpu))
                .map_or(0, |(n, _)| *n);
            let cpus: Vec<usize> = siblings
                .into_iter()
                .filter(|c| online.contains(c))
                .collect();
            cores.push(Core {
                cpus,
                numa_node,
                l3_group,
            });
        }
        Ok(CpuTopology {
            online,
            allowed,
            cores,
            l3_groups,
            numa_nodes,
        })
    }

    pub fn threads_per_core(&self) -> usize {
        self.cores.iter().map(|c| c.cpus.len()).max().unwrap_or(1)
    }
}

/// The CPUs sharing this CPU's level-3 cache, from `cache/indexN` where `level` is 3.
fn l3_of(root: &Sysroot, base: &str) -> Option<Vec<usize>> {
    (0..8).find_map(|i| {
        let dir = format!("{base}/cache/index{i}");
        let level = root.read(&format!("{dir}/level")).ok()?;
        if level.trim() != "3" {
            return None;
        }
        cpulist::parse(root.read(&format!("{dir}/shared_cpu_list")).ok()?.trim()).ok()
    })
}
