//! Every change to a job, as SQL on the writer's connection. Each runs inside the writer's
//! group commit; a running job's transitions are fenced by its [`Lease`] (job, attempt and
//! owner), so a late answer from a lost lease changes nothing.

use super::filter;
use super::rows::{job_from_row, JOB_COLUMNS};
use crate::job::{EnqueueOutcome, FailOutcome, Failure, Job, JobState, Lease, NewJob, Selection};
use crate::{now_ms, QueueError};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use steward_config::Backoff;

pub(super) fn enqueue(
    c: &Connection,
    jobs: Vec<NewJob>,
) -> Result<Vec<EnqueueOutcome>, QueueError> {
    let now = now_ms();
    let mut insert = c.prepare_cached(
        "INSERT INTO jobs (queue, key, payload, priority, state, max_attempts, run_after, timeout_ms, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, ?6, ?6) ON CONFLICT (queue, key) DO NOTHING",
    )?;
    let mut existing =
        c.prepare_cached("SELECT id, state FROM jobs WHERE queue = ?1 AND key = ?2")?;
    let mut out = Vec::with_capacity(jobs.len());
    for j in jobs {
        let n = insert.execute(params![
            j.queue,
            j.key,
            j.payload.to_string(),
            j.priority,
            j.max_attempts,
            now,
            j.timeout_ms.map(|t| t as i64)
        ])?;
        if n == 1 {
            out.push(EnqueueOutcome::Inserted {
                id: c.last_insert_rowid(),
            });
        } else {
            let (id, state): (i64, String) =
                existing.query_row(params![j.queue, j.key], |r| Ok((r.get(0)?, r.get(1)?)))?;
            out.push(if state == "succeeded" {
                EnqueueOutcome::AlreadyDone { id }
            } else {
                EnqueueOutcome::AlreadyQueued { id }
            });
        }
    }
    Ok(out)
}

/// The next ready job of `queue`, leased to `owner`.
pub(super) fn lease(
    c: &Connection,
    queue: &str,
    owner: &str,
    ttl_ms: i64,
) -> Result<Option<Job>, QueueError> {
    // The queue's name is written into the SQL as a literal, not bound: with STAT4 (which
    // the bundled SQLite enables) a bound value in an indexed equality makes SQLite
    // re-prepare the statement at every new binding, which cost a fifth of the writer's
    // time. So one cached statement per queue. (No store takes a NUL in a name.)
    let target = format!("'{}'", queue.replace('\'', "''"));
    let sql = format!(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?2, lease_expires_at = ?3,
            started_at = ?4, updated_at = ?4, progress = NULL, progress_message = NULL
         WHERE id = (SELECT id FROM jobs WHERE queue = {target} AND state IN ('pending','retrying') AND run_after <= ?4
                     ORDER BY priority DESC, id LIMIT 1)
         RETURNING {JOB_COLUMNS}"
    );
    let now = now_ms();
    let mut stmt = c.prepare_cached(&sql)?;
    // A row whose payload cannot be read would be picked first at every lease and stop
    // the queue: it is quarantined with the reason, and the next job is leased instead.
    for _ in 0..100 {
        match stmt
            .query_row(params![queue, owner, now + ttl_ms, now], job_from_row)
            .optional()
            .map_err(QueueError::from)
        {
            Err(QueueError::Corrupt { id, what }) => {
                c.prepare_cached(
                    "UPDATE jobs SET state = 'quarantined', lease_owner = NULL, lease_expires_at = NULL,
                        last_error = ?2, updated_at = ?3, finished_at = ?3 WHERE id = ?1",
                )?
                .execute(params![id, format!("its row cannot be read: {what}"), now])?;
            }
            other => return other,
        }
    }
    Err(QueueError::Invalid(format!(
        "queue {queue:?} has more than 100 rows that cannot be read; check the file with `steward queue ls`"
    )))
}

pub(super) fn complete(c: &Connection, lease: &Lease) -> Result<bool, QueueError> {
    let now = now_ms();
    Ok(c.prepare_cached(
        "UPDATE jobs SET state = 'succeeded', lease_owner = NULL, lease_expires_at = NULL, progress = 1.0,
            updated_at = ?4, finished_at = ?4
         WHERE id = ?1 AND state = 'running' AND lease_owner = ?2 AND attempts = ?3",
    )?
    .execute(params![lease.job, lease.owner, lease.attempt, now])?
        == 1)
}

pub(super) fn heartbeat(c: &Connection, lease: &Lease, ttl_ms: i64) -> Result<bool, QueueError> {
    let now = now_ms();
    Ok(c.prepare_cached(
        "UPDATE jobs SET lease_expires_at = ?4, updated_at = ?5
         WHERE id = ?1 AND state = 'running' AND lease_owner = ?2 AND attempts = ?3",
    )?
    .execute(params![
        lease.job,
        lease.owner,
        lease.attempt,
        now + ttl_ms,
        now
    ])? == 1)
}

pub(super) fn progress(
    c: &Connection,
    lease: &Lease,
    value: f64,
    message: Option<String>,
) -> Result<bool, QueueError> {
    let value = if value.is_finite() {
        value.clamp(0.0, 1.0)
    } else {
        0.0
    };
    Ok(c.prepare_cached(
        "UPDATE jobs SET progress = ?4, progress_message = ?5, updated_at = ?6
         WHERE id = ?1 AND state = 'running' AND lease_owner = ?2 AND attempts = ?3",
    )?
    .execute(params![
        lease.job,
        lease.owner,
        lease.attempt,
        value,
        message,
        now_ms()
    ])? == 1)
}

/// The job `lease` names, if it still holds it.
fn leased(c: &Connection, lease: &Lease) -> Result<Option<Job>, QueueError> {
    Ok(c.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1 AND state = 'running' AND lease_owner = ?2 AND attempts = ?3"
    ))?
    .query_row(params![lease.job, lease.owner, lease.attempt], job_from_row)
    .optional()?)
}

pub(super) fn fail(
    c: &Connection,
    lease: &Lease,
    failure: &Failure,
    backoff: &Backoff,
) -> Result<FailOutcome, QueueError> {
    match leased(c, lease)? {
        None => Ok(FailOutcome::NotLeased),
        Some(job) => record_failure(c, &job, failure, backoff),
    }
}

pub(super) fn quarantine_now(
    c: &Connection,
    lease: &Lease,
    failure: &Failure,
) -> Result<bool, QueueError> {
    match leased(c, lease)? {
        None => Ok(false),
        Some(mut job) => {
            job.attempts = job.attempts.max(job.max_attempts);
            record_failure(c, &job, failure, &Backoff::default())?;
            Ok(true)
        }
    }
}

pub(super) fn rescue(
    c: &Connection,
    node_ttl_ms: i64,
    backoff: &Backoff,
) -> Result<Vec<(i64, FailOutcome)>, QueueError> {
    let now = now_ms();
    // Live: a node that beat within the TTL, has not stopped, and whose current run is
    // the one that took the lease (its owner starts with `<node>/<run>/`).
    let jobs: Vec<Job> = c
        .prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'running'
             AND (lease_expires_at < ?1 OR NOT EXISTS (
                SELECT 1 FROM nodes n WHERE n.stopped = 0 AND n.heartbeat_at >= ?1 - ?2
                AND substr(jobs.lease_owner, 1, length(n.name) + length(n.run) + 2) = n.name || '/' || n.run || '/'))"
        ))?
        .query_map(params![now, node_ttl_ms], job_from_row)?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for job in jobs {
        let expired = job.lease_expires_at.is_some_and(|t| t < now);
        let owner = job.lease_owner.as_deref().unwrap_or("?");
        let failure = Failure {
            class: steward_events::ExitClass::LeaseExpired,
            error: if expired {
                format!("lease held by {owner} expired")
            } else {
                format!("lease held by {owner}, whose agent is gone")
            },
            stderr_tail: None,
        };
        out.push((job.id, record_failure(c, &job, &failure, backoff)?));
    }
    Ok(out)
}

pub(super) fn prune(c: &Connection, older_than_ms: i64, batch: usize) -> Result<u64, QueueError> {
    Ok(c.prepare_cached(
        "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE state IN ('succeeded','quarantined','cancelled')
            AND COALESCE(finished_at, updated_at) < ?1 LIMIT ?2)",
    )?
    .execute(params![
        now_ms().saturating_sub(older_than_ms),
        batch.min(i64::MAX as usize) as i64
    ])? as u64)
}

/// Records attempt `n` of a job and moves it on: retry after a backoff, or quarantine.
fn record_failure(
    c: &Connection,
    job: &Job,
    failure: &Failure,
    backoff: &Backoff,
) -> Result<FailOutcome, QueueError> {
    let now = now_ms();
    c.prepare_cached(
        "INSERT OR REPLACE INTO attempts (job_id, n, owner, started_at, ended_at, class, error, stderr_tail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        job.id,
        job.attempts,
        job.lease_owner,
        job.started_at,
        now,
        serde_json::to_string(&failure.class).ok(),
        failure.error,
        failure.stderr_tail
    ])?;
    if job.attempts >= job.max_attempts {
        c.prepare_cached(
            "UPDATE jobs SET state = 'quarantined', last_error = ?2, lease_owner = NULL, lease_expires_at = NULL,
                updated_at = ?3, finished_at = ?3 WHERE id = ?1",
        )?
        .execute(params![job.id, failure.error, now])?;
        return Ok(FailOutcome::Quarantined {
            attempts: job.attempts,
        });
    }
    let delay = backoff.delay(job.attempts.saturating_sub(1), fastrand::f64());
    let run_after = now.saturating_add(delay.as_millis().min(i64::MAX as u128) as i64);
    c.prepare_cached(
        "UPDATE jobs SET state = 'retrying', last_error = ?2, lease_owner = NULL, lease_expires_at = NULL,
            run_after = ?3, updated_at = ?4 WHERE id = ?1",
    )?
    .execute(params![job.id, failure.error, run_after, now])?;
    Ok(FailOutcome::Retrying {
        run_after,
        attempts: job.attempts,
    })
}

/// Runs `set` (an `UPDATE jobs SET … WHERE` prefix whose own values come first in
/// `values`) on the selected jobs that also meet `guard`.
fn update_selected(
    c: &Connection,
    set: &str,
    values: Vec<Value>,
    guard: &str,
    which: &Selection,
) -> Result<u64, QueueError> {
    match which {
        Selection::Ids(ids) => {
            let mut stmt = c.prepare_cached(&format!("{set} id = ? AND {guard}"))?;
            let mut n = 0;
            for id in ids {
                let mut v = values.clone();
                v.push(Value::Integer(*id));
                n += stmt.execute(params_from_iter(v))? as u64;
            }
            Ok(n)
        }
        Selection::Matching(f) => {
            let (clause, mut fv) = filter::where_clause(f);
            let mut v = values;
            v.append(&mut fv);
            v.push(Value::Integer(filter::limit(f)));
            let sql = format!(
                "{set} id IN (SELECT id FROM jobs WHERE {clause} AND {guard} ORDER BY id LIMIT ?)"
            );
            Ok(c.execute(&sql, params_from_iter(v))? as u64)
        }
    }
}

pub(super) fn retry(c: &Connection, which: &Selection) -> Result<u64, QueueError> {
    update_selected(
        c,
        "UPDATE jobs SET state = 'pending', attempts = 0, run_after = ?1, updated_at = ?1, finished_at = NULL,
            lease_owner = NULL, lease_expires_at = NULL WHERE",
        vec![Value::Integer(now_ms())],
        "state != 'running'",
        which,
    )
}

pub(super) fn cancel(c: &Connection, which: &Selection) -> Result<u64, QueueError> {
    update_selected(
        c,
        "UPDATE jobs SET state = 'cancelled', updated_at = ?1, finished_at = ?1, lease_owner = NULL,
            lease_expires_at = NULL WHERE",
        vec![Value::Integer(now_ms())],
        "state IN ('pending','retrying','running')",
        which,
    )
}

pub(super) fn mark_succeeded(c: &Connection, ids: &[i64]) -> Result<u64, QueueError> {
    update_selected(
        c,
        "UPDATE jobs SET state = 'succeeded', updated_at = ?1, finished_at = ?1, lease_owner = NULL,
            lease_expires_at = NULL WHERE",
        vec![Value::Integer(now_ms())],
        "state != 'running'",
        &Selection::Ids(ids.to_vec()),
    )
}

pub(super) fn purge(
    c: &Connection,
    state: JobState,
    older_than_ms: i64,
) -> Result<u64, QueueError> {
    if !matches!(
        state,
        JobState::Succeeded | JobState::Quarantined | JobState::Cancelled
    ) {
        return Err(QueueError::Invalid(format!(
            "purge deletes finished jobs only (succeeded, quarantined or cancelled), not {state} ones; cancel them first"
        )));
    }
    Ok(c.execute(
        "DELETE FROM jobs WHERE state = ?1 AND COALESCE(finished_at, updated_at) < ?2",
        params![state.as_str(), now_ms().saturating_sub(older_than_ms)],
    )? as u64)
}
