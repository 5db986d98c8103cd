//! The parsers against the real H200 capture and synthetic trees.

use std::path::PathBuf;
use steward_host::synthetic::SyntheticHost;
use steward_host::{
    CgroupFacts, CoreDumpFacts, CpuTopology, GpuInventory, HostFacts, MemInfo, Sysroot,
};

fn h200() -> Sysroot {
    Sysroot::at(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/h200-host/sysroot"))
}

#[test]
fn h200_memory_cpus_and_gpu() {
    let root = h200();
    let mem = MemInfo::read(&root).unwrap();
    assert_eq!(mem.total, 131981020 * 1024);
    assert_eq!(mem.swap_total, 0);
    let cpu = CpuTopology::read(&root).unwrap();
    assert_eq!(cpu.online.len(), 16);
    assert_eq!(cpu.cores.len(), 16, "no hyper-threading on this VM");
    assert_eq!(cpu.threads_per_core(), 1);
    assert_eq!(cpu.l3_groups, vec![(0..16).collect::<Vec<_>>()]);
    assert_eq!(cpu.numa_nodes.len(), 1);
    let gpus = GpuInventory::discover(&root);
    assert_eq!(gpus.driver_version.as_deref(), Some("580.159.04"));
    let g = &gpus.gpus[0];
    assert_eq!(g.uuid, "GPU-47af2219-09e0-d052-c96e-97203cad93dc");
    assert_eq!(g.name, "NVIDIA H200");
    assert_eq!(g.pci_bus_id, "00000000:00:06.0");
    assert_eq!(g.memory_total, 143771 << 20);
    assert_eq!(g.memory_free, 143156 << 20);
    assert_eq!(g.persistence_mode, Some(true));
    assert_eq!(g.ecc_uncorrected_volatile, Some(0));
    assert_eq!(g.remapped_rows_pending, Some(false));
    assert_eq!(g.retired_pages_pending, None, "N/A in the capture");
    assert_eq!(g.numa_node, None, "the VM reports numa_node -1");
    assert_eq!(
        g.local_cpus.as_deref(),
        Some(&(0..16).collect::<Vec<_>>()[..])
    );
}

#[test]
fn h200_cgroup_delegation_is_refused_with_the_reason() {
    let cg = CgroupFacts::read(&h200());
    assert_eq!(cg.version, "v2");
    assert_eq!(cg.own_group.as_deref(), Some("/job.slice/worker"));
    assert!(!cg.hard_limits);
    assert!(cg
        .why_not
        .unwrap()
        .contains("4 processes share /job.slice/worker"));
    let core = CoreDumpFacts::read(&h200());
    assert_eq!(core.pattern.as_deref(), Some("core"));
    assert!(!core.enabled());
}

#[test]
fn a_partial_root_is_a_partial_report() {
    let root = h200();
    let facts = HostFacts::gather(&root, std::path::Path::new("/srv/state"));
    assert!(facts.memory.is_some() && facts.cpu.is_some());
    assert_eq!(facts.missing.len(), 1, "{:?}", facts.missing);
    assert!(
        facts.missing[0].starts_with("disk: cannot read"),
        "{:?}",
        facts.missing
    );
    let empty = tempfile::tempdir().unwrap();
    let facts = HostFacts::gather(&Sysroot::at(empty.path()), std::path::Path::new("/srv"));
    assert!(facts.memory.is_none() && facts.cpu.is_none());
    let missing = facts.missing.join("\n");
    assert!(
        missing.contains("memory: cannot read") && missing.contains("proc/meminfo"),
        "{missing}"
    );
    assert!(missing.contains("cpu topology: cannot read"), "{missing}");
    assert!(facts.gpus.gpus.is_empty());
}

#[test]
fn two_socket_tree_parses_siblings_numa_and_gpus() {
    let dir = tempfile::tempdir().unwrap();
    SyntheticHost::two_socket_4_gpus()
        .write(dir.path())
        .unwrap();
    let root = Sysroot::at(dir.path());
    let cpu = CpuTopology::read(&root).unwrap();
    assert_eq!(cpu.online.len(), 32);
    assert_eq!(cpu.cores.len(), 16);
    assert_eq!(cpu.cores[0].cpus, vec![0, 16]);
    assert_eq!(cpu.cores[8].numa_node, 1);
    assert_eq!(
        cpu.numa_nodes[&1],
        vec![8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31]
    );
    assert_eq!(cpu.l3_groups.len(), 2);
    let gpus = GpuInventory::discover(&root);
    let nodes: Vec<_> = gpus.gpus.iter().map(|g| g.numa_node).collect();
    assert_eq!(nodes, vec![Some(0), Some(0), Some(1), Some(1)]);
}

#[test]
fn amd_ccx_trees_give_one_l3_group_per_ccx() {
    for (host, groups) in [
        (SyntheticHost::amd_two_ccx(), 2),
        (SyntheticHost::amd_4_ccx(), 4),
    ] {
        let dir = tempfile::tempdir().unwrap();
        host.write(dir.path()).unwrap();
        let cpu = CpuTopology::read(&Sysroot::at(dir.path())).unwrap();
        assert_eq!(cpu.l3_groups.len(), groups);
        assert_eq!(cpu.cores[0].cpus, vec![0, 12], "core 0 with its sibling 12");
    }
}
