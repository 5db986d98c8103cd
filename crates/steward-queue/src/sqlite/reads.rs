//! Reads on a reader connection: counts, listings, one job with its attempts. WAL lets
//! them run beside the writer without blocking it.

use super::filter;
use super::rows::{attempt_from_row, job_from_row, state_of, ATTEMPT_COLUMNS, JOB_COLUMNS};
use crate::job::{Attempt, Counts, Job, JobFilter, Stats};
use crate::{now_ms, QueueError};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

pub(super) fn stats(c: &Connection, queue: Option<&str>) -> Result<Stats, QueueError> {
    let mut counts = Counts::default();
    let mut q = c.prepare_cached(
        "SELECT state, COUNT(*), MIN(id) FROM jobs WHERE (?1 IS NULL OR queue = ?1) GROUP BY state",
    )?;
    let rows = q.query_map(params![queue], |r| {
        let state: String = r.get(0)?;
        Ok((state_of(r.get(2)?, 0, &state)?, r.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (state, n) = row?;
        counts.add(state, n.max(0) as u64);
    }
    let minute_ago = now_ms() - 60_000;
    let recent: i64 = c.prepare_cached(
        "SELECT COUNT(*) FROM jobs WHERE state = 'succeeded' AND finished_at >= ?2 AND (?1 IS NULL OR queue = ?1)",
    )?
    .query_row(params![queue, minute_ago], |r| r.get(0))?;
    let oldest_running = c
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'running' AND (?1 IS NULL OR queue = ?1) ORDER BY started_at LIMIT 1"
        ))?
        .query_row(params![queue], job_from_row)
        .optional()?;
    Ok(Stats {
        queue: queue.map(str::to_string),
        counts,
        succeeded_last_minute: recent as u64,
        eta_seconds: (recent > 0).then(|| counts.unfinished() * 60 / recent as u64),
        oldest_running,
    })
}

pub(super) fn list(c: &Connection, f: &JobFilter) -> Result<Vec<Job>, QueueError> {
    let (clause, mut values) = filter::where_clause(f);
    values.push(Value::Integer(filter::limit(f)));
    let mut q = c.prepare(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE {clause} ORDER BY id LIMIT ?"
    ))?;
    let rows = q.query_map(params_from_iter(values), job_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn get(c: &Connection, id: i64) -> Result<Option<(Job, Vec<Attempt>)>, QueueError> {
    let Some(job) = c
        .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?
        .query_row(params![id], job_from_row)
        .optional()?
    else {
        return Ok(None);
    };
    let mut q = c.prepare_cached(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE job_id = ?1 ORDER BY n"
    ))?;
    let attempts = q
        .query_map(params![id], |r| attempt_from_row(id, r))?
        .collect::<Result<_, _>>()?;
    Ok(Some((job, attempts)))
}
