//! Rows to jobs and attempts. A row that does not read (an unknown state, a payload that
//! is not JSON) is an error naming the job, never a default.

use crate::error::CorruptRow;
use crate::job::{Attempt, Job, JobState};
use rusqlite::types::Type;
use rusqlite::Row;

pub(super) const JOB_COLUMNS: &str = "id, queue, key, payload, priority, state, attempts, max_attempts, run_after, lease_owner,
    lease_expires_at, timeout_ms, progress, progress_message, last_error, created_at, updated_at, started_at, finished_at";

fn corrupt(col: usize, id: i64, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, Type::Text, Box::new(CorruptRow { id, what }))
}

/// A state column as a [`JobState`].
pub(super) fn state_of(id: i64, col: usize, text: &str) -> rusqlite::Result<JobState> {
    text.parse().map_err(|_| {
        corrupt(
            col,
            id,
            format!("its state {text:?} is not one steward knows"),
        )
    })
}

pub(super) fn job_from_row(r: &Row) -> rusqlite::Result<Job> {
    let id: i64 = r.get(0)?;
    let payload: String = r.get(3)?;
    let state: String = r.get(5)?;
    Ok(Job {
        id,
        queue: r.get(1)?,
        key: r.get(2)?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| corrupt(3, id, format!("its payload is not JSON ({e})")))?,
        priority: r.get(4)?,
        state: state_of(id, 5, &state)?,
        attempts: r.get(6)?,
        max_attempts: r.get(7)?,
        run_after: r.get(8)?,
        lease_owner: r.get(9)?,
        lease_expires_at: r.get(10)?,
        timeout_ms: r.get::<_, Option<i64>>(11)?.map(|v| v as u64),
        progress: r.get(12)?,
        progress_message: r.get(13)?,
        last_error: r.get(14)?,
        created_at: r.get(15)?,
        updated_at: r.get(16)?,
        started_at: r.get(17)?,
        finished_at: r.get(18)?,
    })
}

pub(super) const ATTEMPT_COLUMNS: &str =
    "n, owner, started_at, ended_at, class, error, stderr_tail";

pub(super) fn attempt_from_row(job: i64, r: &Row) -> rusqlite::Result<Attempt> {
    let class: Option<String> = r.get(4)?;
    let class = class
        .map(|c| {
            serde_json::from_str(&c)
                .map_err(|e| corrupt(4, job, format!("an attempt's class is not readable ({e})")))
        })
        .transpose()?;
    Ok(Attempt {
        n: r.get(0)?,
        owner: r.get(1)?,
        started_at: r.get(2)?,
        ended_at: r.get(3)?,
        class,
        error: r.get(5)?,
        stderr_tail: r.get(6)?,
    })
}
