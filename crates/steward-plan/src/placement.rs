//! CPU pinning for `cpus_per_replica = K`: K whole cores per replica (hyper-thread
//! siblings together), from its GPU's NUMA node, inside one L3 group (a CCX) where one has
//! room, and never shared with another pinned replica. Pure: topology in, CPUs out.

use crate::Instance;
use std::collections::{BTreeMap, BTreeSet};
use steward_config::Config;
use steward_host::CpuTopology;

/// What placement could not do as asked.
#[derive(Debug, Default)]
pub struct PlacementNotes {
    pub refusals: Vec<(String, String)>,
    pub warnings: Vec<String>,
}

pub fn place(config: &Config, topo: &CpuTopology, instances: &mut [Instance]) -> PlacementNotes {
    let mut notes = PlacementNotes::default();
    // Cores are usable when every sibling is online and allowed; explicit `cpus` lists
    // take theirs first, so the planner never hands them out again.
    let allowed: BTreeSet<usize> = topo.allowed.iter().copied().collect();
    let mut used: BTreeSet<usize> = instances
        .iter()
        .flat_map(|i| i.cpus.clone().unwrap_or_default())
        .collect();
    // L3 groups already holding replicas, by GPU: replicas of one GPU share a CCX, and
    // different GPUs get different ones (CCX0 for GPU 0, CCX1 for GPU 1, as people pin by hand).
    let mut groups_of: BTreeMap<Option<u32>, BTreeSet<usize>> = BTreeMap::new();
    for inst in instances.iter_mut() {
        let Some(k) = config
            .services
            .get(&inst.service)
            .and_then(|s| s.cpus_per_replica)
        else {
            continue;
        };
        let k = k as usize;
        let free: Vec<usize> = (0..topo.cores.len())
            .filter(|&i| {
                topo.cores[i]
                    .cpus
                    .iter()
                    .all(|c| allowed.contains(c) && !used.contains(c))
            })
            .collect();
        let node = inst
            .gpu
            .as_ref()
            .and_then(|g| g.numa_node)
            .filter(|n| topo.numa_nodes.contains_key(n));
        let local: Vec<usize> = free
            .iter()
            .copied()
            .filter(|&i| node.is_none_or(|n| topo.cores[i].numa_node == n))
            .collect();
        let pool = if local.len() >= k {
            local
        } else if free.len() >= k {
            if let Some(n) = node {
                notes.warnings.push(format!(
                    "{}: only {} free core(s) on NUMA node {n} of its GPU; it takes {k} from another node (slower memory access)",
                    inst.name,
                    local.len()
                ));
            }
            free
        } else {
            notes.refusals.push((
                format!("services.{}.cpus_per_replica", inst.service),
                format!(
                    "{} needs {k} whole core(s) but only {} are free and allowed (of {} cores); lower cpus_per_replica or replicas",
                    inst.name,
                    free.len(),
                    topo.cores.len()
                ),
            ));
            continue;
        };
        let gpu = inst.gpu.as_ref().map(|g| g.index);
        let mine = groups_of.get(&gpu).cloned().unwrap_or_default();
        let others: BTreeSet<usize> = groups_of
            .iter()
            .filter(|(g, _)| **g != gpu)
            .flat_map(|(_, s)| s.iter().copied())
            .collect();
        let chosen = choose(topo, &pool, k, &mine, &others);
        let groups: BTreeSet<usize> = chosen.iter().map(|&i| topo.cores[i].l3_group).collect();
        if groups.len() > 1 {
            notes.warnings.push(format!(
                "{}: no single L3 group has {k} free core(s); its cores span {} L3 groups",
                inst.name,
                groups.len()
            ));
        }
        groups_of
            .entry(gpu)
            .or_default()
            .extend(groups.iter().copied());
        let mut cpus: Vec<usize> = chosen
            .iter()
            .flat_map(|&i| topo.cores[i].cpus.clone())
            .collect();
        cpus.sort_unstable();
        used.extend(&cpus);
        inst.cpus = Some(cpus);
    }
    notes
}

/// Picks `k` cores from `pool` (core indexes) inside one L3 group if any has room: first
/// a group this GPU's replicas already use, then one no other GPU uses, then any; within
/// each tier the tightest fit. Without such a group, the fullest groups first. Lowest
/// core numbers within a group.
fn choose(
    topo: &CpuTopology,
    pool: &[usize],
    k: usize,
    mine: &BTreeSet<usize>,
    others: &BTreeSet<usize>,
) -> Vec<usize> {
    let mut by_group: Vec<(usize, Vec<usize>)> = Vec::new();
    for &core in pool {
        let g = topo.cores[core].l3_group;
        match by_group.iter_mut().find(|(gg, _)| *gg == g) {
            Some((_, v)) => v.push(core),
            None => by_group.push((g, vec![core])),
        }
    }
    let tier = |g: &usize| -> u8 {
        if mine.contains(g) {
            0
        } else if !others.contains(g) {
            1
        } else {
            2
        }
    };
    if let Some((_, cores)) = by_group
        .iter()
        .filter(|(_, v)| v.len() >= k)
        .min_by_key(|(g, v)| (tier(g), v.len(), *g))
    {
        return cores[..k].to_vec();
    }
    by_group.sort_by_key(|(g, v)| (std::cmp::Reverse(v.len()), *g));
    by_group.into_iter().flat_map(|(_, v)| v).take(k).collect()
}
