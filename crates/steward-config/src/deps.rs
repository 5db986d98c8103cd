//! `depends_on`: the conditions, and the checks on the graph as a whole (unknown names,
//! self-dependencies, cycles), done once the whole file is read.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a dependent waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    /// Its process is running.
    Started,
    /// Its health check passes (or it said READY=1).
    Healthy,
    /// It is a one-shot that exited 0.
    Completed,
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Condition::Started => "started",
            Condition::Healthy => "healthy",
            Condition::Completed => "completed",
        })
    }
}

/// `depends_on = ["redis"]` (started) or `depends_on = { redis = "healthy" }`.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a table such as { redis = \"healthy\" } or a list of service names"
)]
pub enum RawDependsOn {
    List(Vec<String>),
    Table(BTreeMap<String, Condition>),
}

impl RawDependsOn {
    pub fn into_map(self) -> BTreeMap<String, Condition> {
        match self {
            RawDependsOn::List(names) => {
                names.into_iter().map(|n| (n, Condition::Started)).collect()
            }
            RawDependsOn::Table(t) => t,
        }
    }
}

/// Finds a cycle in `graph` (service -> the services it depends on) and returns it as a
/// path that starts and ends at the same service, e.g. `[a, b, c, a]`.
pub fn find_cycle(graph: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, Vec<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_string(), Mark::OnPath);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next.as_str()).copied().unwrap_or(Mark::New) {
                Mark::OnPath => {
                    let start = path.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(next, graph, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node.as_str()).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(node, graph, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// Each service's depth: 0 for a service with no dependencies, else one more than its
/// deepest dependency. Services of equal depth can start (and stop) together.
pub fn depths(graph: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, usize> {
    fn depth(
        n: &str,
        g: &BTreeMap<String, Vec<String>>,
        memo: &mut BTreeMap<String, usize>,
        guard: usize,
    ) -> usize {
        if let Some(d) = memo.get(n) {
            return *d;
        }
        // `guard` bounds the recursion should a cycle slip through.
        let d = if guard == 0 {
            0
        } else {
            g.get(n)
                .into_iter()
                .flatten()
                .map(|m| depth(m, g, memo, guard - 1) + 1)
                .max()
                .unwrap_or(0)
        };
        memo.insert(n.to_string(), d);
        d
    }
    let mut memo = BTreeMap::new();
    for n in graph.keys() {
        depth(n, graph, &mut memo, graph.len());
    }
    memo
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(a, bs)| (a.to_string(), bs.iter().map(|b| b.to_string()).collect()))
            .collect()
    }

    #[test]
    fn finds_the_whole_cycle() {
        let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &[])]);
        assert_eq!(find_cycle(&g).unwrap(), vec!["a", "b", "c", "a"]);
        let g = graph(&[("a", &["b"]), ("b", &[]), ("c", &["a", "b"])]);
        assert_eq!(find_cycle(&g), None);
        assert_eq!(depths(&g)["c"], 2);
        assert_eq!(depths(&g)["b"], 0);
    }
}
