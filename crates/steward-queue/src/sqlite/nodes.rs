//! The fleet's rows in SQLite: nodes, their heartbeats, and the leader's lease. One agent
//! owns a SQLite queue (it lives in its locked state dir), so the fleet is that agent's
//! runs; the same rules as for a shared store still decide which leases are live.

use crate::nodes::{can_take_over, pid_alive, running_of, NodeInfo, NodeRow, NodeTaken};
use crate::{now_ms, QueueError};
use rusqlite::{params, Connection, OptionalExtension};
use std::time::Duration;

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

fn info_json(node: &NodeInfo) -> String {
    serde_json::to_string(node).unwrap_or_else(|_| "{}".into())
}

pub(super) fn join(c: &Connection, node: &NodeInfo, ttl: Duration) -> Result<(), QueueError> {
    let now = now_ms();
    if let Some(row) = read_all(c, now, ttl)?
        .into_iter()
        .find(|r| r.info.name == node.name)
    {
        if !can_take_over(node, &row, ttl, pid_alive) {
            return Err(QueueError::NodeTaken(NodeTaken {
                name: node.name.clone(),
                pid: row.info.pid,
                host: row.info.host,
                heartbeat_age: Duration::from_millis(row.heartbeat_age_ms.max(0) as u64),
            }));
        }
    }
    c.prepare_cached(
        "INSERT INTO nodes (name, run, info, started_at, heartbeat_at, stopped) VALUES (?1, ?2, ?3, ?4, ?4, 0)
         ON CONFLICT (name) DO UPDATE SET run = excluded.run, info = excluded.info,
            started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, stopped = 0",
    )?
    .execute(params![node.name, node.run, info_json(node), now])?;
    Ok(())
}

pub(super) fn beat(c: &Connection, node: &NodeInfo) -> Result<bool, QueueError> {
    Ok(c.prepare_cached(
        "UPDATE nodes SET heartbeat_at = ?3, info = ?4 WHERE name = ?1 AND run = ?2 AND stopped = 0",
    )?
    .execute(params![node.name, node.run, now_ms(), info_json(node)])?
        == 1)
}

pub(super) fn leave(c: &Connection, node: &NodeInfo) -> Result<(), QueueError> {
    let now = now_ms();
    c.prepare_cached(
        "UPDATE nodes SET stopped = 1, heartbeat_at = ?3 WHERE name = ?1 AND run = ?2",
    )?
    .execute(params![node.name, node.run, now])?;
    c.prepare_cached("DELETE FROM leader WHERE name = ?1 AND run = ?2")?
        .execute(params![node.name, node.run])?;
    Ok(())
}

pub(super) fn lead(c: &Connection, node: &NodeInfo, ttl: Duration) -> Result<bool, QueueError> {
    let now = now_ms();
    Ok(c
        .prepare_cached(
            "INSERT INTO leader (id, name, run, expires_at) VALUES (1, ?1, ?2, ?4)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, run = excluded.run, expires_at = excluded.expires_at
             WHERE leader.expires_at < ?3 OR (leader.name = excluded.name AND leader.run = excluded.run)
             RETURNING name",
        )?
        .query_row(
            params![node.name, node.run, now, now.saturating_add(ms(ttl))],
            |r| r.get::<_, String>(0),
        )
        .optional()?
        .is_some())
}

pub(super) fn nodes(c: &Connection, ttl: Duration) -> Result<Vec<NodeRow>, QueueError> {
    read_all(c, now_ms(), ttl)
}

fn read_all(c: &Connection, now: i64, ttl: Duration) -> Result<Vec<NodeRow>, QueueError> {
    let leader: Option<(String, String)> = c
        .prepare_cached("SELECT name, run FROM leader WHERE id = 1 AND expires_at >= ?1")?
        .query_row(params![now], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let by_owner: Vec<(String, u64)> = c
        .prepare_cached(
            "SELECT lease_owner, COUNT(*) FROM jobs WHERE state = 'running' AND lease_owner IS NOT NULL GROUP BY lease_owner",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?
        .collect::<Result<_, _>>()?;
    let mut q = c.prepare_cached(
        "SELECT name, run, info, started_at, heartbeat_at, stopped FROM nodes ORDER BY name",
    )?;
    let rows = q.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, bool>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, run, info, started_at, heartbeat_at, stopped) = row?;
        let mut info: NodeInfo = serde_json::from_str(&info).unwrap_or_default();
        info.name = name;
        info.run = run;
        let age = now - heartbeat_at;
        out.push(NodeRow {
            jobs_running: running_of(&info.owner_prefix(), &by_owner),
            leader: leader
                .as_ref()
                .is_some_and(|(n, r)| *n == info.name && *r == info.run),
            alive: !stopped && age <= ms(ttl),
            info,
            started_at,
            heartbeat_at,
            heartbeat_age_ms: age,
            stopped,
        });
    }
    Ok(out)
}
