//! The fleet's rows: nodes, their heartbeats, and the one leader's lease, all by the
//! server's clock.

use super::error::pg;
use crate::nodes::{can_take_over, pid_alive, running_of, NodeInfo, NodeRow, NodeTaken};
use crate::QueueError;
use deadpool_postgres::GenericClient;
use std::time::Duration;

type Client = deadpool_postgres::Client;

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

fn info_json(node: &NodeInfo) -> serde_json::Value {
    serde_json::to_value(node).unwrap_or_default()
}

pub async fn join(c: &mut Client, node: &NodeInfo, ttl: Duration) -> Result<(), QueueError> {
    let tx = c.transaction().await.map_err(pg)?;
    // Two agents joining with one name at once: the row lock orders them.
    tx.execute(
        "INSERT INTO steward_nodes (name, run, info, started_at, heartbeat_at, stopped)
         VALUES ($1, '', '{}', 0, 0, true) ON CONFLICT (name) DO NOTHING",
        &[&node.name],
    )
    .await
    .map_err(pg)?;
    let row = tx
        .query_one(
            "SELECT run, info, started_at, heartbeat_at, stopped, steward_now_ms() - heartbeat_at
             FROM steward_nodes WHERE name = $1 FOR UPDATE",
            &[&node.name],
        )
        .await
        .map_err(pg)?;
    let existing = NodeRow {
        info: NodeInfo {
            run: row.get(0),
            ..serde_json::from_value(row.get(1)).unwrap_or_default()
        },
        started_at: row.get(2),
        heartbeat_at: row.get(3),
        stopped: row.get(4),
        heartbeat_age_ms: row.get(5),
        alive: false,
        leader: false,
        jobs_running: 0,
    };
    if !can_take_over(node, &existing, ttl, pid_alive) {
        return Err(QueueError::NodeTaken(NodeTaken {
            name: node.name.clone(),
            pid: existing.info.pid,
            host: existing.info.host,
            heartbeat_age: Duration::from_millis(existing.heartbeat_age_ms.max(0) as u64),
        }));
    }
    tx.execute(
        "UPDATE steward_nodes SET run = $2, info = $3, started_at = steward_now_ms(),
            heartbeat_at = steward_now_ms(), stopped = false WHERE name = $1",
        &[&node.name, &node.run, &info_json(node)],
    )
    .await
    .map_err(pg)?;
    tx.commit().await.map_err(pg)
}

pub async fn beat(c: &Client, node: &NodeInfo) -> Result<bool, QueueError> {
    let stmt = c
        .prepare_cached(
            "UPDATE steward_nodes SET heartbeat_at = steward_now_ms(), info = $3
             WHERE name = $1 AND run = $2 AND NOT stopped",
        )
        .await
        .map_err(pg)?;
    Ok(c.execute(&stmt, &[&node.name, &node.run, &info_json(node)])
        .await
        .map_err(pg)?
        == 1)
}

pub async fn leave(c: &Client, node: &NodeInfo) -> Result<(), QueueError> {
    c.execute(
        "UPDATE steward_nodes SET stopped = true, heartbeat_at = steward_now_ms() WHERE name = $1 AND run = $2",
        &[&node.name, &node.run],
    )
    .await
    .map_err(pg)?;
    c.execute(
        "DELETE FROM steward_leader WHERE name = $1 AND run = $2",
        &[&node.name, &node.run],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

pub async fn lead(c: &Client, node: &NodeInfo, ttl: Duration) -> Result<bool, QueueError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO steward_leader AS l (id, name, run, expires_at) VALUES (1, $1, $2, steward_now_ms() + $3)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, run = excluded.run, expires_at = excluded.expires_at
             WHERE l.expires_at < steward_now_ms() OR (l.name = excluded.name AND l.run = excluded.run)
             RETURNING name",
        )
        .await
        .map_err(pg)?;
    Ok(c.query_opt(&stmt, &[&node.name, &node.run, &ms(ttl)])
        .await
        .map_err(pg)?
        .is_some())
}

pub async fn nodes(c: &Client, ttl: Duration) -> Result<Vec<NodeRow>, QueueError> {
    let leader = c
        .query_opt(
            "SELECT name, run FROM steward_leader WHERE id = 1 AND expires_at >= steward_now_ms()",
            &[],
        )
        .await
        .map_err(pg)?
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)));
    let by_owner: Vec<(String, u64)> = c
        .query(
            "SELECT lease_owner, COUNT(*) FROM steward_jobs WHERE state = 'running' AND lease_owner IS NOT NULL
             GROUP BY lease_owner",
            &[],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64))
        .collect();
    let rows = c
        .query(
            "SELECT name, run, info, started_at, heartbeat_at, stopped, steward_now_ms() - heartbeat_at
             FROM steward_nodes WHERE run <> '' ORDER BY name",
            &[],
        )
        .await
        .map_err(pg)?;
    Ok(rows
        .iter()
        .map(|r| {
            let mut info: NodeInfo = serde_json::from_value(r.get(2)).unwrap_or_default();
            info.name = r.get(0);
            info.run = r.get(1);
            let stopped: bool = r.get(5);
            let age: i64 = r.get(6);
            NodeRow {
                jobs_running: running_of(&info.owner_prefix(), &by_owner),
                leader: leader
                    .as_ref()
                    .is_some_and(|(n, run)| *n == info.name && *run == info.run),
                alive: !stopped && age <= ms(ttl),
                info,
                started_at: r.get(3),
                heartbeat_at: r.get(4),
                heartbeat_age_ms: age,
                stopped,
            }
        })
        .collect())
}
