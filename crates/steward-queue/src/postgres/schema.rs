//! The queue's tables in PostgreSQL (all named `steward_*`, so the database can be
//! shared) and their versioned migrations, run once under an advisory lock.

use super::error::pg;
use crate::QueueError;

/// The advisory lock every migration runs under (an arbitrary constant: "stew").
const MIGRATION_LOCK: i64 = 0x7374_6577;

const SCHEMA: &[&str] = &[
    // 1: jobs, attempts, the fleet, and the clock every node agrees on (the server's).
    "CREATE FUNCTION steward_now_ms() RETURNS bigint LANGUAGE sql VOLATILE
        AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;
    CREATE TABLE steward_jobs (
        id bigserial PRIMARY KEY,
        queue text NOT NULL,
        key text NOT NULL,
        payload jsonb NOT NULL,
        priority bigint NOT NULL DEFAULT 0,
        state text NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        max_attempts integer NOT NULL,
        run_after bigint NOT NULL,
        lease_owner text,
        lease_expires_at bigint,
        timeout_ms bigint,
        progress double precision,
        progress_message text,
        last_error text,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL,
        started_at bigint,
        finished_at bigint,
        UNIQUE (queue, key)
    );
    -- Claims walk this in claim order and stop at the first ready rows; finished jobs are
    -- not in it, so history does not slow a claim down.
    CREATE INDEX steward_jobs_ready ON steward_jobs (queue, priority DESC, id)
        WHERE state IN ('pending', 'retrying');
    CREATE INDEX steward_jobs_running ON steward_jobs (lease_expires_at) WHERE state = 'running';
    CREATE INDEX steward_jobs_finished ON steward_jobs ((COALESCE(finished_at, updated_at)))
        WHERE state IN ('succeeded', 'quarantined', 'cancelled');
    CREATE TABLE steward_attempts (
        job_id bigint NOT NULL REFERENCES steward_jobs (id) ON DELETE CASCADE,
        n integer NOT NULL,
        owner text,
        started_at bigint,
        ended_at bigint NOT NULL,
        class text,
        error text,
        stderr_tail text,
        PRIMARY KEY (job_id, n)
    );
    CREATE TABLE steward_nodes (
        name text PRIMARY KEY,
        run text NOT NULL,
        info jsonb NOT NULL,
        started_at bigint NOT NULL,
        heartbeat_at bigint NOT NULL,
        stopped boolean NOT NULL DEFAULT false
    );
    CREATE TABLE steward_leader (
        id integer PRIMARY KEY CHECK (id = 1),
        name text NOT NULL,
        run text NOT NULL,
        expires_at bigint NOT NULL
    );",
    // 2: a finished job leaves a dead entry in the ready index until vacuum removes it,
    // and claims walk past those: vacuum the jobs table after 2% of it changed, not the
    // default 20%, so a burst of completions stops slowing claims within a naptime.
    "ALTER TABLE steward_jobs SET (autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_vacuum_insert_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
    ALTER TABLE steward_attempts SET (autovacuum_vacuum_scale_factor = 0.02);",
];

/// The version this steward writes.
pub fn current() -> usize {
    SCHEMA.len()
}

/// Brings the schema up to date, once, whoever else is starting: the version is read and
/// every step applied under one advisory lock, in one transaction. A database at a newer
/// version than this steward knows is refused.
pub async fn migrate(client: &mut tokio_postgres::Client, masked: &str) -> Result<(), QueueError> {
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS steward_schema (version integer NOT NULL)")
        .await
        .map_err(pg)?;
    let version: i32 = tx
        .query_opt("SELECT version FROM steward_schema", &[])
        .await
        .map_err(pg)?
        .map_or(0, |r| r.get(0));
    let version = version.max(0) as usize;
    if version > SCHEMA.len() {
        return Err(QueueError::Invalid(format!(
            "the queue in {masked} is at schema version {version}, newer than this steward knows ({}); run a steward at least as new as the newest agent that uses it",
            SCHEMA.len()
        )));
    }
    for step in &SCHEMA[version..] {
        tx.batch_execute(step).await.map_err(pg)?;
    }
    if version < SCHEMA.len() {
        let v = SCHEMA.len() as i32;
        tx.execute("DELETE FROM steward_schema", &[])
            .await
            .map_err(pg)?;
        tx.execute("INSERT INTO steward_schema (version) VALUES ($1)", &[&v])
            .await
            .map_err(pg)?;
    }
    tx.commit().await.map_err(pg)
}
