//! The drivers against fake cgroup trees, as a delegated v2 host and a host that does
//! not delegate memory lay them out.

use super::{CgroupDriver, CgroupLimits};
use std::fs;

/// A fake cgroup2 mount whose own group offers memory and pids, as under systemd's
/// `Delegate=yes`.
fn fake_tree() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let group = root.path().join("system.slice/steward.service");
    fs::create_dir_all(&group).unwrap();
    fs::write(
        root.path().join("cgroup.controllers"),
        "cpuset cpu io memory pids\n",
    )
    .unwrap();
    fs::write(group.join("cgroup.controllers"), "memory pids\n").unwrap();
    fs::write(group.join("cgroup.subtree_control"), "").unwrap();
    fs::write(group.join("cgroup.procs"), "4242\n").unwrap();
    root
}

#[test]
fn delegated_v2_moves_to_a_leaf_enables_controllers_and_writes_limits() {
    let root = fake_tree();
    let driver = CgroupDriver::detect_at(
        root.path(),
        "0::/system.slice/steward.service\n",
        "abc",
        4242,
    );
    let CgroupDriver::V2(base) = &driver else {
        panic!("expected v2, got {driver:?}");
    };
    let group = root.path().join("system.slice/steward.service");
    assert_eq!(
        fs::read_to_string(group.join("steward-agent/cgroup.procs")).unwrap(),
        "4242"
    );
    assert_eq!(
        fs::read_to_string(group.join("cgroup.subtree_control")).unwrap(),
        "+memory +pids"
    );
    assert_eq!(
        fs::read_to_string(base.dir().join("cgroup.subtree_control")).unwrap(),
        "+memory +pids"
    );

    let limits = CgroupLimits {
        memory: Some(64 << 20),
        memory_swap: Some(64 << 20),
        pids_max: Some(100),
        cpus: None,
    };
    let svc = driver.create("worker", &limits).unwrap().unwrap();
    assert_eq!(
        fs::read_to_string(svc.dir().join("memory.max")).unwrap(),
        "67108864"
    );
    assert_eq!(
        fs::read_to_string(svc.dir().join("pids.max")).unwrap(),
        "100"
    );

    // What the kernel would write after an OOM kill.
    fs::write(
        svc.dir().join("memory.events"),
        "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n",
    )
    .unwrap();
    fs::write(svc.dir().join("memory.peak"), "67104768\n").unwrap();
    fs::write(svc.dir().join("memory.current"), "1000\n").unwrap();
    assert_eq!(svc.oom_kills(), 1);
    assert_eq!(svc.memory_peak(), Some(67104768));
    assert_eq!(svc.memory_current(), Some(1000));
}

#[test]
fn v2_without_memory_delegation_falls_back_and_says_why() {
    let root = tempfile::tempdir().unwrap();
    let group = root.path().join("job.slice/worker");
    fs::create_dir_all(&group).unwrap();
    fs::write(root.path().join("cgroup.controllers"), "memory pids\n").unwrap();
    fs::write(group.join("cgroup.controllers"), "\n").unwrap();
    let driver = CgroupDriver::detect_at(root.path(), "0::/job.slice/worker\n", "abc", 1);
    let CgroupDriver::None { reason } = &driver else {
        panic!("expected no cgroup, got {driver:?}");
    };
    assert!(
        reason.contains("memory controller is not delegated"),
        "{reason}"
    );
    assert!(reason.contains("cgroup v1"), "{reason}");
}
