//! `[node]`: this agent's name in a queue shared by many nodes, and how it says it lives.

use crate::context::Ctx;
use crate::{ConfigError, HumanDuration};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    /// The name, or `env:VAR` to read it from the environment.
    pub name: Option<String>,
    pub heartbeat: Option<HumanDuration>,
    pub ttl: Option<HumanDuration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// Unique among the agents sharing a queue; default: the hostname.
    pub name: String,
    /// How often the agent writes its node's row.
    pub heartbeat: HumanDuration,
    /// A node silent this long is dead: its leases are rescued.
    pub ttl: HumanDuration,
}

/// Longest node name: a DNS label.
const MAX_NAME: usize = 63;

/// The host's name, as `[node] name` defaults to.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Why `name` cannot name a node, if it cannot: 1 to 63 letters, digits, `.`, `_` or `-`
/// (it is written into lease owners as `<node>/<run>/<slot>`).
pub fn check_node_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("{name:?} must be 1 to {MAX_NAME} characters long"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{name:?} has {bad:?}; a node name takes letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

pub(crate) fn resolve(ctx: &Ctx, raw: Option<RawNode>) -> Result<Node, ConfigError> {
    let raw = raw.unwrap_or_default();
    let name = match raw.name {
        // In a Kubernetes DaemonSet: the node's name, from the downward API.
        Some(n) if n.starts_with("env:") => {
            let var = &n["env:".len()..];
            match std::env::var(var) {
                Ok(v) if !v.is_empty() => v,
                _ => {
                    return Err(ctx.err(
                        &["node", "name"],
                        format!("env:{var} is not set, empty or not UTF-8; set it to this node's name, or write the name itself"),
                    ))
                }
            }
        }
        Some(n) => n,
        None => {
            // A hostname that is not a valid node name (rare) becomes one.
            let h: String = hostname()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '-'
                    }
                })
                .take(MAX_NAME)
                .collect();
            h
        }
    };
    check_node_name(&name).map_err(|why| ctx.err(&["node", "name"], why))?;
    let node = Node {
        name,
        heartbeat: raw.heartbeat.unwrap_or(HumanDuration::secs(5)),
        ttl: raw.ttl.unwrap_or(HumanDuration::secs(30)),
    };
    if node.heartbeat.0 < Duration::from_millis(100) {
        return Err(ctx.err(&["node", "heartbeat"], "must be at least 100ms"));
    }
    if node.ttl.0 < node.heartbeat.0 * 2 {
        return Err(ctx.err(
            &["node", "ttl"],
            format!(
                "must be at least twice the heartbeat ({}), or one late heartbeat declares a live node dead",
                node.heartbeat
            ),
        ));
    }
    Ok(node)
}
