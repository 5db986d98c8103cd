//! Reads: counts, listings, one job with its attempts.

use super::error::pg;
use super::filter::{self, Param};
use super::rows::{attempt_from_row, job_from_row, ATTEMPT_COLUMNS, JOB_COLUMNS};
use crate::job::{Attempt, Counts, Job, JobFilter, JobState, Stats};
use crate::QueueError;
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

type Client = deadpool_postgres::Client;

pub async fn stats(c: &Client, queue: Option<&str>) -> Result<Stats, QueueError> {
    let mut counts = Counts::default();
    let rows = c
        .query(
            "SELECT state, COUNT(*), MIN(id) FROM steward_jobs WHERE ($1::text IS NULL OR queue = $1) GROUP BY state",
            &[&queue],
        )
        .await
        .map_err(pg)?;
    for r in &rows {
        let state: String = r.get(0);
        let n: i64 = r.get(1);
        let st: JobState = state.parse().map_err(|_| QueueError::Corrupt {
            id: r.get(2),
            what: format!("its state {state:?} is not one steward knows"),
        })?;
        counts.add(st, n.max(0) as u64);
    }
    let recent: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM steward_jobs WHERE state = 'succeeded'
             AND COALESCE(finished_at, 0) >= steward_now_ms() - 60000 AND ($1::text IS NULL OR queue = $1)",
            &[&queue],
        )
        .await
        .map_err(pg)?
        .get(0);
    let oldest_running = c
        .query_opt(
            &format!(
                "SELECT {JOB_COLUMNS} FROM steward_jobs WHERE state = 'running' AND ($1::text IS NULL OR queue = $1)
                 ORDER BY started_at LIMIT 1"
            ),
            &[&queue],
        )
        .await
        .map_err(pg)?
        .as_ref()
        .map(job_from_row)
        .transpose()?;
    Ok(Stats {
        queue: queue.map(str::to_string),
        counts,
        succeeded_last_minute: recent.max(0) as u64,
        eta_seconds: (recent > 0).then(|| counts.unfinished() * 60 / recent as u64),
        oldest_running,
    })
}

pub async fn list(c: &Client, f: &JobFilter) -> Result<Vec<Job>, QueueError> {
    let mut params: Vec<Param> = Vec::new();
    let clause = filter::where_clause(f, &mut params);
    let limit = filter::limit(f, &mut params);
    let sql = format!("SELECT {JOB_COLUMNS} FROM steward_jobs WHERE {clause} ORDER BY id {limit}");
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as _).collect();
    c.query(&sql, &refs)
        .await
        .map_err(pg)?
        .iter()
        .map(job_from_row)
        .collect()
}

pub async fn get(c: &Client, id: i64) -> Result<Option<(Job, Vec<Attempt>)>, QueueError> {
    let Some(row) = c
        .query_opt(
            &format!("SELECT {JOB_COLUMNS} FROM steward_jobs WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(pg)?
    else {
        return Ok(None);
    };
    let job = job_from_row(&row)?;
    let attempts = c
        .query(
            &format!("SELECT {ATTEMPT_COLUMNS} FROM steward_attempts WHERE job_id = $1 ORDER BY n"),
            &[&id],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| attempt_from_row(id, r))
        .collect::<Result<_, _>>()?;
    Ok(Some((job, attempts)))
}
