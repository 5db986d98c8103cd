//! What an agent that died left behind, found without that agent: processes that carry
//! its marker (`STEWARD_UNIT=<id>/…`, which children inherit) and its cgroups
//! (`steward-<id>`, anywhere in the cgroup tree). `steward down` and `steward ps` use this
//! when no agent answers; a new agent kills the same through its cgroup driver.

use crate::procfs;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How deep into the cgroup tree the agent's groups are looked for.
const MAX_DEPTH: usize = 8;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Live processes of the agent's services.
    pub pids: Vec<i32>,
    /// The agent's own cgroup folders (`steward-<id>`), with their service groups inside.
    pub groups: Vec<PathBuf>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty() && self.groups.is_empty()
    }
}

/// Everything the agent of `agent_id` left.
pub fn find(agent_id: &str) -> Leftovers {
    let mut groups = Vec::new();
    let name = format!("steward-{agent_id}");
    for root in cgroup_roots() {
        walk(&root, &name, 0, &mut groups);
    }
    let mut pids = procfs::pids_with_marker_prefix(&format!("{agent_id}/"));
    for g in &groups {
        pids.extend(procs_under(g));
    }
    pids.retain(|&p| p != std::process::id() as i32 && !procfs::is_zombie(p));
    pids.sort_unstable();
    pids.dedup();
    Leftovers { pids, groups }
}

/// Kills every process left and removes the groups. Returns what it found killed.
pub fn stop(found: &Leftovers) -> Vec<i32> {
    for &p in &found.pids {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while found
        .pids
        .iter()
        .any(|&p| procfs::state(p).is_some_and(|s| s != 'Z'))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    for g in &found.groups {
        remove_tree(g);
    }
    found.pids.clone()
}

/// The mounted cgroup hierarchies: the v2 root, or each v1 controller's.
fn cgroup_roots() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        return vec![base.to_path_buf()];
    }
    std::fs::read_dir(base)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("cgroup.procs").exists())
                .collect()
        })
        .unwrap_or_default()
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn walk(dir: &Path, name: &str, depth: usize, found: &mut Vec<PathBuf>) {
    if depth > MAX_DEPTH {
        return;
    }
    for sub in subdirs(dir) {
        if sub.file_name().is_some_and(|n| n == name) {
            found.push(sub);
        } else {
            walk(&sub, name, depth + 1, found);
        }
    }
}

fn procs_under(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for sub in subdirs(dir) {
        pids.extend(procs_under(&sub));
    }
    pids
}

/// Removes a cgroup folder and its (empty) children, deepest first.
fn remove_tree(dir: &Path) {
    for sub in subdirs(dir) {
        remove_tree(&sub);
    }
    let _ = std::fs::remove_dir(dir);
}
