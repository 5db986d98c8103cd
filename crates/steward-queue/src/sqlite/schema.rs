//! The queue's tables and their migrations. The version lives in `PRAGMA user_version`.

use rusqlite::Connection;

const SCHEMA: &[&str] = &[
    // 1: jobs and their attempts.
    "CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        queue TEXT NOT NULL,
        key TEXT NOT NULL,
        payload TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        run_after INTEGER NOT NULL,
        lease_owner TEXT,
        lease_expires_at INTEGER,
        timeout_ms INTEGER,
        progress REAL,
        progress_message TEXT,
        last_error TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER,
        UNIQUE (queue, key)
    );
    CREATE INDEX jobs_ready ON jobs (queue, state, priority DESC, run_after, id);
    CREATE INDEX jobs_running ON jobs (state, lease_expires_at);
    CREATE INDEX jobs_finished ON jobs (state, finished_at);
    CREATE TABLE attempts (
        job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        n INTEGER NOT NULL,
        owner TEXT,
        started_at INTEGER,
        ended_at INTEGER NOT NULL,
        class TEXT,
        error TEXT,
        stderr_tail TEXT,
        PRIMARY KEY (job_id, n)
    );",
    // 2: leasing walks a partial index in lease order and stops at the first ready row,
    // instead of sorting every pending job on each lease.
    "DROP INDEX jobs_ready;
    CREATE INDEX jobs_ready ON jobs (queue, priority DESC, id) WHERE state IN ('pending','retrying');",
    // 3: the fleet: one row per node name, and the one leader's lease.
    "CREATE TABLE nodes (
        name TEXT PRIMARY KEY,
        run TEXT NOT NULL,
        info TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        heartbeat_at INTEGER NOT NULL,
        stopped INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE leader (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        name TEXT NOT NULL,
        run TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );",
];

/// Settings every connection gets: durable commits, WAL, a patient lock wait.
pub(super) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

pub(super) enum MigrateError {
    Sql(rusqlite::Error),
    /// The file was written by a newer steward: why, in words.
    TooNew(String),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        MigrateError::Sql(e)
    }
}

/// Brings the schema up to date. The version is read inside an IMMEDIATE transaction, so
/// two processes opening a new queue at the same moment (an agent and `steward queue stats`)
/// cannot both create it. A file from a newer steward is refused.
pub(super) fn migrate(conn: &Connection) -> Result<(), MigrateError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version.max(0) as usize > SCHEMA.len() {
            return Err(MigrateError::TooNew(format!(
                "its schema is version {version}, newer than this steward knows ({}); run a steward at least as new as the one that wrote it",
                SCHEMA.len()
            )));
        }
        for (i, step) in SCHEMA.iter().enumerate().skip(version.max(0) as usize) {
            conn.execute_batch(step)?;
            conn.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        Ok(())
    })();
    conn.execute_batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
    result
}
