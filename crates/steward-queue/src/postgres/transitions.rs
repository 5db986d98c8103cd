//! Every change to a job, as SQL. Claims take up to one job per free slot with
//! `FOR UPDATE SKIP LOCKED`; a running job's transitions are fenced by its [`Lease`] (job,
//! attempt and owner). Times are the server's clock, so nodes whose clocks drift agree.

use super::error::pg;
use super::filter::{self, Param};
use super::rows::{job_columns_of, job_from_row, JOB_COLUMNS};
use crate::job::{EnqueueOutcome, FailOutcome, Failure, Job, JobState, Lease, NewJob, Selection};
use crate::QueueError;
use deadpool_postgres::GenericClient;
use std::collections::HashMap;
use steward_config::Backoff;
use tokio_postgres::types::ToSql;

type Client = deadpool_postgres::Client;

pub async fn enqueue(c: &Client, jobs: &[NewJob]) -> Result<Vec<EnqueueOutcome>, QueueError> {
    let queues: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
    let keys: Vec<&str> = jobs.iter().map(|j| j.key.as_str()).collect();
    let payloads: Vec<&serde_json::Value> = jobs.iter().map(|j| &j.payload).collect();
    let priorities: Vec<i64> = jobs.iter().map(|j| j.priority).collect();
    let attempts: Vec<i32> = jobs
        .iter()
        .map(|j| j.max_attempts.min(i32::MAX as u32) as i32)
        .collect();
    let timeouts: Vec<Option<i64>> = jobs
        .iter()
        .map(|j| j.timeout_ms.map(|t| t.min(i64::MAX as u64) as i64))
        .collect();
    let stmt = c
        .prepare_cached(
            "INSERT INTO steward_jobs (queue, key, payload, priority, state, max_attempts, run_after, timeout_ms, created_at, updated_at)
             SELECT u.q, u.k, u.p, u.pr, 'pending', u.ma, n.now, u.t, n.now, n.now
             FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::int8[], $5::int4[], $6::int8[]) AS u (q, k, p, pr, ma, t),
                  (SELECT steward_now_ms() AS now) AS n
             ON CONFLICT (queue, key) DO NOTHING
             RETURNING id, queue, key",
        )
        .await
        .map_err(pg)?;
    let inserted = c
        .query(
            &stmt,
            &[&queues, &keys, &payloads, &priorities, &attempts, &timeouts],
        )
        .await
        .map_err(pg)?;
    let mut new: HashMap<(String, String), i64> = inserted
        .iter()
        .map(|r| ((r.get(1), r.get(2)), r.get(0)))
        .collect();
    // The rest were there already (or twice in this batch): queued, or done.
    let existing = c
        .query(
            "SELECT id, queue, key, state FROM steward_jobs
             WHERE (queue, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            &[&queues, &keys],
        )
        .await
        .map_err(pg)?;
    let known: HashMap<(String, String), (i64, String)> = existing
        .iter()
        .map(|r| ((r.get(1), r.get(2)), (r.get(0), r.get(3))))
        .collect();
    let mut out = Vec::with_capacity(jobs.len());
    for j in jobs {
        let k = (j.queue.clone(), j.key.clone());
        if let Some(id) = new.remove(&k) {
            out.push(EnqueueOutcome::Inserted { id });
        } else if let Some((id, state)) = known.get(&k) {
            out.push(if state == "succeeded" {
                EnqueueOutcome::AlreadyDone { id: *id }
            } else {
                EnqueueOutcome::AlreadyQueued { id: *id }
            });
        } else {
            return Err(QueueError::Invalid(format!(
                "job {:?} of queue {:?} was neither inserted nor found",
                j.key, j.queue
            )));
        }
    }
    Ok(out)
}

/// Claims up to `owners.len()` ready jobs of `queue`, in priority then age order, the
/// i-th to `owners[i]`, in one statement.
pub async fn lease_many(
    c: &Client,
    queue: &str,
    owners: &[String],
    ttl_ms: i64,
) -> Result<Vec<Job>, QueueError> {
    if owners.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "WITH picked AS (
            SELECT id, priority FROM steward_jobs
            WHERE queue = $1 AND state IN ('pending', 'retrying')
                AND run_after <= (SELECT steward_now_ms())
            ORDER BY priority DESC, id
            LIMIT $2
            FOR UPDATE SKIP LOCKED
         ), numbered AS (
            SELECT id, row_number() OVER (ORDER BY priority DESC, id) AS n FROM picked
         ), owners AS (
            SELECT owner, n FROM unnest($3::text[]) WITH ORDINALITY AS o (owner, n)
         ), now AS (SELECT steward_now_ms() AS ms)
         UPDATE steward_jobs j SET state = 'running', attempts = j.attempts + 1,
            lease_owner = owners.owner, lease_expires_at = now.ms + $4, started_at = now.ms,
            updated_at = now.ms, progress = NULL, progress_message = NULL
         FROM numbered JOIN owners USING (n), now
         WHERE j.id = numbered.id
         RETURNING numbered.n, {}",
        job_columns_of("j")
    );
    let stmt = c.prepare_cached(&sql).await.map_err(pg)?;
    let limit = owners.len() as i64;
    let rows = c
        .query(&stmt, &[&queue, &limit, &owners, &ttl_ms])
        .await
        .map_err(pg)?;
    let mut jobs: Vec<(i64, Job)> = Vec::with_capacity(rows.len());
    for r in &rows {
        let n: i64 = r.get(0);
        // The job columns follow `n`.
        jobs.push((n, job_from_row_at(r)?));
    }
    jobs.sort_by_key(|(n, _)| *n);
    Ok(jobs.into_iter().map(|(_, j)| j).collect())
}

/// A job whose columns start at index 1 (after a leading `n`).
fn job_from_row_at(r: &tokio_postgres::Row) -> Result<Job, QueueError> {
    super::rows::job_from_row_offset(r, 1)
}

/// `UPDATE steward_jobs SET {set} WHERE` the lease still holds; true when it did.
async fn fenced(
    c: &Client,
    set: &str,
    lease: &Lease,
    extra: &[&(dyn ToSql + Sync)],
) -> Result<bool, QueueError> {
    let sql = format!(
        "UPDATE steward_jobs SET {set} WHERE id = $1 AND state = 'running' AND lease_owner = $2 AND attempts = $3"
    );
    let stmt = c.prepare_cached(&sql).await.map_err(pg)?;
    let attempt = lease.attempt.min(i32::MAX as u32) as i32;
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&lease.job, &lease.owner, &attempt];
    params.extend_from_slice(extra);
    Ok(c.execute(&stmt, &params).await.map_err(pg)? == 1)
}

pub async fn complete(c: &Client, lease: &Lease) -> Result<bool, QueueError> {
    fenced(
        c,
        "state = 'succeeded', lease_owner = NULL, lease_expires_at = NULL, progress = 1.0,
         updated_at = steward_now_ms(), finished_at = steward_now_ms()",
        lease,
        &[],
    )
    .await
}

pub async fn heartbeat(c: &Client, lease: &Lease, ttl_ms: i64) -> Result<bool, QueueError> {
    fenced(
        c,
        "lease_expires_at = steward_now_ms() + $4, updated_at = steward_now_ms()",
        lease,
        &[&ttl_ms],
    )
    .await
}

pub async fn progress(
    c: &Client,
    lease: &Lease,
    value: f64,
    message: Option<String>,
) -> Result<bool, QueueError> {
    let value = if value.is_finite() {
        value.clamp(0.0, 1.0)
    } else {
        0.0
    };
    fenced(
        c,
        "progress = $4, progress_message = $5, updated_at = steward_now_ms()",
        lease,
        &[&value, &message],
    )
    .await
}

/// The job `lease` names, locked, if the lease still holds.
async fn leased(
    tx: &deadpool_postgres::Transaction<'_>,
    lease: &Lease,
) -> Result<Option<Job>, QueueError> {
    let attempt = lease.attempt.min(i32::MAX as u32) as i32;
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM steward_jobs
             WHERE id = $1 AND state = 'running' AND lease_owner = $2 AND attempts = $3 FOR UPDATE"
        ))
        .await
        .map_err(pg)?;
    tx.query_opt(&stmt, &[&lease.job, &lease.owner, &attempt])
        .await
        .map_err(pg)?
        .as_ref()
        .map(job_from_row)
        .transpose()
}

pub async fn fail(
    c: &mut Client,
    lease: &Lease,
    failure: &Failure,
    backoff: &Backoff,
) -> Result<FailOutcome, QueueError> {
    let tx = c.transaction().await.map_err(pg)?;
    let out = match leased(&tx, lease).await? {
        None => FailOutcome::NotLeased,
        Some(job) => record_failure(&tx, &job, failure, backoff).await?,
    };
    tx.commit().await.map_err(pg)?;
    Ok(out)
}

pub async fn quarantine_now(
    c: &mut Client,
    lease: &Lease,
    failure: &Failure,
) -> Result<bool, QueueError> {
    let tx = c.transaction().await.map_err(pg)?;
    let done = match leased(&tx, lease).await? {
        None => false,
        Some(mut job) => {
            job.attempts = job.attempts.max(job.max_attempts);
            record_failure(&tx, &job, failure, &Backoff::default()).await?;
            true
        }
    };
    tx.commit().await.map_err(pg)?;
    Ok(done)
}

pub async fn rescue(
    c: &mut Client,
    node_ttl_ms: i64,
    backoff: &Backoff,
) -> Result<Vec<(i64, FailOutcome)>, QueueError> {
    let tx = c.transaction().await.map_err(pg)?;
    // Live: a node that beat within the TTL, has not stopped, and whose current run took
    // the lease. Rows another node's rescue holds are skipped, not waited for.
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {} FROM steward_jobs j WHERE j.state = 'running'
             AND (j.lease_expires_at < steward_now_ms() OR NOT EXISTS (
                SELECT 1 FROM steward_nodes n WHERE NOT n.stopped
                AND n.heartbeat_at >= steward_now_ms() - $1
                AND starts_with(j.lease_owner, n.name || '/' || n.run || '/')))
             FOR UPDATE OF j SKIP LOCKED",
            job_columns_of("j")
        ))
        .await
        .map_err(pg)?;
    let rows = tx.query(&stmt, &[&node_ttl_ms]).await.map_err(pg)?;
    let mut out = Vec::new();
    for r in &rows {
        let job = job_from_row(r)?;
        let owner = job.lease_owner.as_deref().unwrap_or("?");
        let expired = job.lease_expires_at.is_some_and(|t| t < crate::now_ms());
        let failure = Failure {
            class: steward_events::ExitClass::LeaseExpired,
            error: if expired {
                format!("lease held by {owner} expired")
            } else {
                format!("lease held by {owner}, whose agent is gone")
            },
            stderr_tail: None,
        };
        out.push((job.id, record_failure(&tx, &job, &failure, backoff).await?));
    }
    tx.commit().await.map_err(pg)?;
    Ok(out)
}

/// Records attempt `n` of a job and moves it on: retry after a backoff, or quarantine.
async fn record_failure(
    tx: &deadpool_postgres::Transaction<'_>,
    job: &Job,
    failure: &Failure,
    backoff: &Backoff,
) -> Result<FailOutcome, QueueError> {
    let n = job.attempts.min(i32::MAX as u32) as i32;
    let class = serde_json::to_string(&failure.class).ok();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO steward_attempts (job_id, n, owner, started_at, ended_at, class, error, stderr_tail)
             VALUES ($1, $2, $3, $4, steward_now_ms(), $5, $6, $7)
             ON CONFLICT (job_id, n) DO UPDATE SET owner = excluded.owner, started_at = excluded.started_at,
                ended_at = excluded.ended_at, class = excluded.class, error = excluded.error,
                stderr_tail = excluded.stderr_tail",
        )
        .await
        .map_err(pg)?;
    tx.execute(
        &stmt,
        &[
            &job.id,
            &n,
            &job.lease_owner,
            &job.started_at,
            &class,
            &failure.error,
            &failure.stderr_tail,
        ],
    )
    .await
    .map_err(pg)?;
    if job.attempts >= job.max_attempts {
        let stmt = tx
            .prepare_cached(
                "UPDATE steward_jobs SET state = 'quarantined', last_error = $2, lease_owner = NULL,
                    lease_expires_at = NULL, updated_at = steward_now_ms(), finished_at = steward_now_ms()
                 WHERE id = $1",
            )
            .await
            .map_err(pg)?;
        tx.execute(&stmt, &[&job.id, &failure.error])
            .await
            .map_err(pg)?;
        return Ok(FailOutcome::Quarantined {
            attempts: job.attempts,
        });
    }
    let delay = backoff.delay(job.attempts.saturating_sub(1), fastrand::f64());
    let delay_ms = delay.as_millis().min(i64::MAX as u128 / 2) as i64;
    let stmt = tx
        .prepare_cached(
            "UPDATE steward_jobs SET state = 'retrying', last_error = $2, lease_owner = NULL,
                lease_expires_at = NULL, run_after = steward_now_ms() + $3, updated_at = steward_now_ms()
             WHERE id = $1 RETURNING run_after",
        )
        .await
        .map_err(pg)?;
    let row = tx
        .query_one(&stmt, &[&job.id, &failure.error, &delay_ms])
        .await
        .map_err(pg)?;
    Ok(FailOutcome::Retrying {
        run_after: row.get(0),
        attempts: job.attempts,
    })
}

/// Runs `UPDATE steward_jobs SET {set} WHERE` on the selected jobs that meet `guard`.
async fn update_selected(
    c: &Client,
    set: &str,
    guard: &str,
    which: &Selection,
) -> Result<u64, QueueError> {
    match which {
        Selection::Ids(ids) => {
            let sql = format!("UPDATE steward_jobs SET {set} WHERE id = ANY($1) AND {guard}");
            c.execute(&sql, &[ids]).await.map_err(pg)
        }
        Selection::Matching(f) => {
            let mut params: Vec<Param> = Vec::new();
            let clause = filter::where_clause(f, &mut params);
            let limit = filter::limit(f, &mut params);
            let sql = format!(
                "UPDATE steward_jobs SET {set} WHERE id IN
                    (SELECT id FROM steward_jobs WHERE {clause} AND {guard} ORDER BY id {limit})"
            );
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as _).collect();
            c.execute(&sql, &refs).await.map_err(pg)
        }
    }
}

pub async fn retry(c: &Client, which: &Selection) -> Result<u64, QueueError> {
    update_selected(
        c,
        "state = 'pending', attempts = 0, run_after = steward_now_ms(), updated_at = steward_now_ms(),
         finished_at = NULL, lease_owner = NULL, lease_expires_at = NULL",
        "state <> 'running'",
        which,
    )
    .await
}

pub async fn cancel(c: &Client, which: &Selection) -> Result<u64, QueueError> {
    update_selected(
        c,
        "state = 'cancelled', updated_at = steward_now_ms(), finished_at = steward_now_ms(),
         lease_owner = NULL, lease_expires_at = NULL",
        "state IN ('pending', 'retrying', 'running')",
        which,
    )
    .await
}

pub async fn mark_succeeded(c: &Client, ids: &[i64]) -> Result<u64, QueueError> {
    update_selected(
        c,
        "state = 'succeeded', updated_at = steward_now_ms(), finished_at = steward_now_ms(),
         lease_owner = NULL, lease_expires_at = NULL",
        "state <> 'running'",
        &Selection::Ids(ids.to_vec()),
    )
    .await
}

pub async fn purge(c: &Client, state: JobState, older_than_ms: i64) -> Result<u64, QueueError> {
    if !matches!(
        state,
        JobState::Succeeded | JobState::Quarantined | JobState::Cancelled
    ) {
        return Err(QueueError::Invalid(format!(
            "purge deletes finished jobs only (succeeded, quarantined or cancelled), not {state} ones; cancel them first"
        )));
    }
    c.execute(
        "DELETE FROM steward_jobs WHERE state = $1 AND COALESCE(finished_at, updated_at) < steward_now_ms() - $2",
        &[&state.as_str(), &older_than_ms],
    )
    .await
    .map_err(pg)
}

pub async fn prune(c: &Client, older_than_ms: i64, batch: usize) -> Result<u64, QueueError> {
    let batch = batch.min(i64::MAX as usize) as i64;
    let stmt = c
        .prepare_cached(
            "DELETE FROM steward_jobs WHERE id IN (
                SELECT id FROM steward_jobs WHERE state IN ('succeeded', 'quarantined', 'cancelled')
                AND COALESCE(finished_at, updated_at) < steward_now_ms() - $1
                LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .await
        .map_err(pg)?;
    c.execute(&stmt, &[&older_than_ms, &batch])
        .await
        .map_err(pg)
}
