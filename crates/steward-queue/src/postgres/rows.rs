//! Rows to jobs and attempts. A row that does not read (an unknown state) is an error
//! naming the job, never a default.

use super::error::pg;
use crate::job::{Attempt, Job, JobState};
use crate::QueueError;
use tokio_postgres::Row;

pub const JOB_COLUMNS: &str = "id, queue, key, payload, priority, state, attempts, max_attempts, run_after, lease_owner,
    lease_expires_at, timeout_ms, progress, progress_message, last_error, created_at, updated_at, started_at, finished_at";

/// The same columns, qualified by `j.` (for statements that join).
pub fn job_columns_of(alias: &str) -> String {
    JOB_COLUMNS
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(r: &'a Row, i: usize) -> Result<T, QueueError> {
    r.try_get(i).map_err(pg)
}

pub fn job_from_row(r: &Row) -> Result<Job, QueueError> {
    job_from_row_offset(r, 0)
}

/// A job whose [`JOB_COLUMNS`] start at column `at`.
pub fn job_from_row_offset(r: &Row, at: usize) -> Result<Job, QueueError> {
    let col = |i: usize| i + at;
    let id: i64 = get(r, col(0))?;
    let state: String = get(r, col(5))?;
    let state: JobState = state.parse().map_err(|_| QueueError::Corrupt {
        id,
        what: format!("its state {state:?} is not one steward knows"),
    })?;
    Ok(Job {
        id,
        queue: get(r, col(1))?,
        key: get(r, col(2))?,
        payload: get(r, col(3))?,
        priority: get(r, col(4))?,
        state,
        attempts: get::<i32>(r, col(6))?.max(0) as u32,
        max_attempts: get::<i32>(r, col(7))?.max(0) as u32,
        run_after: get(r, col(8))?,
        lease_owner: get(r, col(9))?,
        lease_expires_at: get(r, col(10))?,
        timeout_ms: get::<Option<i64>>(r, col(11))?.map(|v| v.max(0) as u64),
        progress: get(r, col(12))?,
        progress_message: get(r, col(13))?,
        last_error: get(r, col(14))?,
        created_at: get(r, col(15))?,
        updated_at: get(r, col(16))?,
        started_at: get(r, col(17))?,
        finished_at: get(r, col(18))?,
    })
}

pub const ATTEMPT_COLUMNS: &str = "n, owner, started_at, ended_at, class, error, stderr_tail";

pub fn attempt_from_row(job: i64, r: &Row) -> Result<Attempt, QueueError> {
    let class: Option<String> = get(r, 4)?;
    let class = class
        .map(|c| {
            serde_json::from_str(&c).map_err(|e| QueueError::Corrupt {
                id: job,
                what: format!("an attempt's class is not readable ({e})"),
            })
        })
        .transpose()?;
    Ok(Attempt {
        n: get::<i32>(r, 0)?.max(0) as u32,
        owner: get(r, 1)?,
        started_at: get(r, 2)?,
        ended_at: get(r, 3)?,
        class,
        error: get(r, 5)?,
        stderr_tail: get(r, 6)?,
    })
}
