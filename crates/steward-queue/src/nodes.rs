//! The fleet: every agent that uses a queue registers its node (one row per node name),
//! beats its heartbeat, and may lead. A lease belongs to one run of one node: its owner is
//! `<node>/<run>/<slot>`, so a lease is live exactly while that run of that node is.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What an agent says of itself in its node's row, every heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's name (`[node] name`, default the hostname): unique in a queue.
    pub name: String,
    /// This run of the agent: a random id, new at each start.
    pub run: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    /// The GPUs it has (UUIDs or names).
    pub gpus: Vec<String>,
    /// Services that are up, out of how many.
    pub services_up: u32,
    pub services_total: u32,
    /// Job slots it runs (replicas x concurrency, over its pipelines).
    pub slots: u32,
}

impl NodeInfo {
    /// The lease owner for one of this run's slots.
    pub fn owner(&self, slot: &str) -> String {
        format!("{}{slot}", self.owner_prefix())
    }

    /// `<node>/<run>/`: what every lease this run holds starts with.
    pub fn owner_prefix(&self) -> String {
        format!("{}/{}/", self.name, self.run)
    }
}

/// A node as the fleet sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRow {
    #[serde(flatten)]
    pub info: NodeInfo,
    pub started_at: i64,
    pub heartbeat_at: i64,
    /// Milliseconds since its last heartbeat, by the store's clock.
    pub heartbeat_age_ms: i64,
    /// It beat within the node TTL and has not stopped.
    pub alive: bool,
    /// It left cleanly (`down`, or the end of `run --until-empty`).
    pub stopped: bool,
    pub leader: bool,
    /// Jobs its current run holds.
    pub jobs_running: u64,
}

/// Why a node could not join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTaken {
    pub name: String,
    pub pid: u32,
    pub host: String,
    pub heartbeat_age: Duration,
}

impl std::fmt::Display for NodeTaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node name {:?} is taken by a live agent (pid {} on host {}, its last heartbeat {:.1?} ago); give this agent another `[node] name`, or stop that one",
            self.name, self.pid, self.host, self.heartbeat_age
        )
    }
}

/// Whether a registration found in a row can be taken over by a new run of `me`: it is
/// stopped, silent past `ttl`, or an earlier run on this same host whose process is gone.
pub fn can_take_over(
    me: &NodeInfo,
    row: &NodeRow,
    ttl: Duration,
    pid_alive: impl Fn(u32) -> bool,
) -> bool {
    row.info.run == me.run
        || row.stopped
        || row.heartbeat_age_ms > ttl.as_millis().min(i64::MAX as u128) as i64
        || (row.info.host == me.host && !pid_alive(row.info.pid))
}

/// Whether `pid` is a process on this host.
pub fn pid_alive(pid: u32) -> bool {
    pid != 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Counts of running jobs per lease owner, summed per `<node>/<run>/` prefix.
pub(crate) fn running_of(prefix: &str, by_owner: &[(String, u64)]) -> u64 {
    by_owner
        .iter()
        .filter(|(o, _)| o.starts_with(prefix))
        .map(|(_, n)| n)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(run: &str, host: &str, pid: u32, age_ms: i64, stopped: bool) -> NodeRow {
        NodeRow {
            info: NodeInfo {
                name: "gpu-3".into(),
                run: run.into(),
                host: host.into(),
                pid,
                ..Default::default()
            },
            started_at: 0,
            heartbeat_at: 0,
            heartbeat_age_ms: age_ms,
            alive: !stopped,
            stopped,
            leader: false,
            jobs_running: 0,
        }
    }

    #[test]
    fn a_live_registration_elsewhere_is_kept_and_a_dead_one_is_taken_over() {
        let me = NodeInfo {
            name: "gpu-3".into(),
            run: "new".into(),
            host: "a".into(),
            pid: 10,
            ..Default::default()
        };
        let ttl = Duration::from_secs(30);
        let alive = |_| true;
        let dead = |_| false;
        assert!(!can_take_over(
            &me,
            &row("old", "b", 7, 1000, false),
            ttl,
            alive
        ));
        assert!(
            !can_take_over(&me, &row("old", "b", 7, 1000, false), ttl, dead),
            "another host's pid says nothing"
        );
        assert!(can_take_over(
            &me,
            &row("old", "b", 7, 31_000, false),
            ttl,
            alive
        ));
        assert!(can_take_over(
            &me,
            &row("old", "b", 7, 1000, true),
            ttl,
            alive
        ));
        assert!(
            can_take_over(&me, &row("old", "a", 7, 1000, false), ttl, dead),
            "a crashed run on this host"
        );
        assert!(!can_take_over(
            &me,
            &row("old", "a", 7, 1000, false),
            ttl,
            alive
        ));
        assert!(can_take_over(
            &me,
            &row("new", "b", 7, 1000, false),
            ttl,
            alive
        ));
    }

    #[test]
    fn owners_carry_node_and_run() {
        let me = NodeInfo {
            name: "gpu-3".into(),
            run: "1a2b".into(),
            ..Default::default()
        };
        assert_eq!(me.owner("ocr#0"), "gpu-3/1a2b/ocr#0");
        let counts = vec![
            ("gpu-3/1a2b/ocr#0".to_string(), 2),
            ("gpu-3/1a2b/ocr#1".to_string(), 1),
            ("gpu-3/0000/ocr#0".to_string(), 5),
        ];
        assert_eq!(running_of(&me.owner_prefix(), &counts), 3);
    }
}
