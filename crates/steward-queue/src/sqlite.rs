//! The SQLite store. One writer thread owns the write connection and commits whatever
//! transitions are waiting in one transaction (each in its own savepoint, so one failing
//! transition does not undo the others): group commit. Replies go out only after COMMIT
//! returned, so an acknowledged transition is on disk.

use crate::job::{
    Attempt, EnqueueOutcome, FailOutcome, Failure, Job, JobFilter, JobState, NewJob, Stats,
};
use crate::{now_ms, JobStore, QueueError};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Mutex;
use steward_config::Backoff;

/// Each transition runs on the writer's connection and hands back how to reply.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
type Run = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;

/// One transition for the writer. A transition of a single statement is atomic by itself
/// and skips its savepoint (two statements less per job on the hot path).
struct Op {
    run: Run,
    single_statement: bool,
}

/// Most transitions folded into one commit.
const GROUP_MAX: usize = 512;

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
];

pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::Sender<Op>,
    reader: Mutex<Connection>,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

impl SqliteStore {
    /// Opens (or creates) the queue at `path`. An existing file that is not a healthy
    /// queue is refused, never recreated: the error names the newest good backup.
    pub fn open(path: &Path) -> Result<SqliteStore, QueueError> {
        let existed = path.exists();
        let sql = |source| QueueError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let damaged = |detail: String| crate::integrity::damaged(path, detail);
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .map_err(|e| {
            if existed {
                damaged(e.to_string())
            } else {
                sql(e)
            }
        })?;
        configure(&conn).map_err(|e| {
            if existed {
                damaged(e.to_string())
            } else {
                sql(e)
            }
        })?;
        if existed {
            let check: String = conn
                .query_row("PRAGMA quick_check", [], |r| r.get(0))
                .map_err(|e| damaged(e.to_string()))?;
            if check != "ok" {
                return Err(damaged(format!("quick_check: {check}")));
            }
        }
        migrate(&conn).map_err(|e| {
            if existed {
                damaged(e.to_string())
            } else {
                sql(e)
            }
        })?;
        let reader =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(sql)?;
        configure(&reader).map_err(sql)?;
        let (tx, rx) = mpsc::channel::<Op>();
        std::thread::Builder::new()
            .name("steward-queue-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|source| QueueError::Io {
                what: "cannot start the queue writer for",
                path: path.to_path_buf(),
                source,
            })?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: tx,
            reader: Mutex::new(reader),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in the writer's next group commit and returns once it is durable.
    fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, QueueError> + Send + 'static,
    ) -> Result<R, QueueError> {
        self.submit(f, false)
    }

    /// [`Self::write`] for a transition that is one SQL statement.
    fn write_single<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, QueueError> + Send + 'static,
    ) -> Result<R, QueueError> {
        self.submit(f, true)
    }

    fn submit<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, QueueError> + Send + 'static,
        single_statement: bool,
    ) -> Result<R, QueueError> {
        let (tx, rx) = mpsc::sync_channel::<Result<R, QueueError>>(1);
        let run: Run = Box::new(move |conn| {
            let result = f(conn);
            let failed = result.is_err();
            let reply: Reply = Box::new(move |committed: Result<(), String>| {
                let out = match committed {
                    Ok(()) => result,
                    Err(e) => Err(QueueError::Invalid(format!("commit failed: {e}"))),
                };
                let _ = tx.send(out);
            });
            (failed, reply)
        });
        self.writer
            .send(Op {
                run,
                single_statement,
            })
            .map_err(|_| QueueError::WriterGone)?;
        rx.recv().map_err(|_| QueueError::WriterGone)?
    }

    fn read<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, QueueError>,
    ) -> Result<R, QueueError> {
        f(&self.reader.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Marks jobs succeeded by id (rebuild-done), or puts them back to pending (requeue).
    pub fn set_state(&self, ids: Vec<i64>, state: JobState) -> Result<usize, QueueError> {
        self.write(move |c| {
            let now = now_ms();
            let mut n = 0;
            for id in ids {
                n += c.execute(
                    "UPDATE jobs SET state = ?2, updated_at = ?3, run_after = ?3, lease_owner = NULL, lease_expires_at = NULL,
                        finished_at = CASE WHEN ?2 IN ('succeeded','cancelled') THEN ?3 ELSE NULL END,
                        attempts = CASE WHEN ?2 = 'pending' THEN 0 ELSE attempts END
                     WHERE id = ?1",
                    params![id, state.as_str(), now],
                )?;
            }
            Ok(n)
        })
    }

    /// Completes a job and leases the next one in the same commit: one round trip per job
    /// for a worker that loops, instead of two.
    pub fn complete_and_lease(
        &self,
        id: i64,
        owner: &str,
        queue: &str,
        ttl_ms: i64,
    ) -> Result<(bool, Option<Job>), QueueError> {
        let (owner, queue) = (owner.to_string(), queue.to_string());
        self.write(move |c| {
            let done = complete_in(c, id, &owner)?;
            Ok((done, lease_in(c, &queue, &owner, ttl_ms)?))
        })
    }

    /// Jobs in `from` (optionally of one queue) back to `pending` with their attempts
    /// reset: `queue retry --state quarantined`.
    pub fn retry_state(&self, queue: Option<String>, from: JobState) -> Result<usize, QueueError> {
        self.write(move |c| {
            Ok(c.execute(
                "UPDATE jobs SET state = 'pending', attempts = 0, run_after = ?3, updated_at = ?3, finished_at = NULL
                 WHERE state = ?1 AND (?2 IS NULL OR queue = ?2)",
                params![from.as_str(), queue, now_ms()],
            )?)
        })
    }

    /// Cancels jobs that have not finished.
    pub fn cancel(&self, ids: Vec<i64>) -> Result<usize, QueueError> {
        self.write(move |c| {
            let mut n = 0;
            for id in ids {
                n += c.execute(
                    "UPDATE jobs SET state = 'cancelled', updated_at = ?2, finished_at = ?2, lease_owner = NULL
                     WHERE id = ?1 AND state IN ('pending','retrying','running')",
                    params![id, now_ms()],
                )?;
            }
            Ok(n)
        })
    }

    /// Deletes finished jobs in `state` older than `older_than_ms`.
    pub fn purge(&self, state: JobState, older_than_ms: i64) -> Result<usize, QueueError> {
        self.write(move |c| {
            Ok(c.execute(
                "DELETE FROM jobs WHERE state = ?1 AND COALESCE(finished_at, updated_at) < ?2",
                params![state.as_str(), now_ms() - older_than_ms],
            )?)
        })
    }

    /// An online backup through SQLite's backup API: consistent while the agent writes.
    pub fn backup_to(&self, dest: &Path) -> Result<(), QueueError> {
        self.read(|c| {
            let mut out = Connection::open(dest)?;
            let b = rusqlite::backup::Backup::new(c, &mut out)?;
            b.run_to_completion(1024, std::time::Duration::ZERO, None)?;
            Ok(())
        })
    }
}

/// Brings the schema up to date. The version is read inside an IMMEDIATE transaction, so
/// two processes opening a new queue at the same moment (an agent and `steward queue stats`)
/// cannot both create it.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, step) in SCHEMA.iter().enumerate().skip(version as usize) {
            conn.execute_batch(step)?;
            conn.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        Ok(())
    })();
    conn.execute_batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
    result
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(batch.len());
        let begun = conn.execute_batch("BEGIN IMMEDIATE");
        if let Err(e) = begun {
            for op in batch {
                let (_, reply) = (op.run)(&conn);
                reply(Err(e.to_string()));
            }
            continue;
        }
        for op in batch {
            if op.single_statement {
                let (_, reply) = (op.run)(&conn);
                replies.push(reply);
                continue;
            }
            // Cached statements: parsing SAVEPOINT/RELEASE for every job is measurable.
            let _ = run_cached(&conn, "SAVEPOINT op");
            let (failed, reply) = (op.run)(&conn);
            if failed {
                let _ = run_cached(&conn, "ROLLBACK TO op");
            }
            let _ = run_cached(&conn, "RELEASE op");
            replies.push(reply);
        }
        let committed = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for reply in replies {
            reply(committed.clone());
        }
    }
}

fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}

const JOB_COLUMNS: &str = "id, queue, key, payload, priority, state, attempts, max_attempts, run_after, lease_owner,
    lease_expires_at, timeout_ms, progress, progress_message, last_error, created_at, updated_at, started_at, finished_at";

fn job_from_row(r: &Row) -> rusqlite::Result<Job> {
    let payload: String = r.get(3)?;
    let state: String = r.get(5)?;
    Ok(Job {
        id: r.get(0)?,
        queue: r.get(1)?,
        key: r.get(2)?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        priority: r.get(4)?,
        state: state.parse().unwrap_or(JobState::Pending),
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

/// Records attempt `n` of a job and moves it on: retry after a backoff, or quarantine.
fn record_failure(
    c: &Connection,
    job: &Job,
    failure: &Failure,
    backoff: &Backoff,
) -> Result<FailOutcome, QueueError> {
    let now = now_ms();
    c.execute(
        "INSERT OR REPLACE INTO attempts (job_id, n, owner, started_at, ended_at, class, error, stderr_tail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            job.id,
            job.attempts,
            job.lease_owner,
            job.started_at,
            now,
            serde_json::to_string(&failure.class).ok(),
            failure.error,
            failure.stderr_tail
        ],
    )?;
    if job.attempts >= job.max_attempts {
        c.execute(
            "UPDATE jobs SET state = 'quarantined', last_error = ?2, lease_owner = NULL, lease_expires_at = NULL,
                updated_at = ?3, finished_at = ?3 WHERE id = ?1",
            params![job.id, failure.error, now],
        )?;
        return Ok(FailOutcome::Quarantined {
            attempts: job.attempts,
        });
    }
    let delay = backoff.delay(job.attempts.saturating_sub(1), fastrand::f64());
    let run_after = now + delay.as_millis() as i64;
    c.execute(
        "UPDATE jobs SET state = 'retrying', last_error = ?2, lease_owner = NULL, lease_expires_at = NULL,
            run_after = ?3, updated_at = ?4 WHERE id = ?1",
        params![job.id, failure.error, run_after, now],
    )?;
    Ok(FailOutcome::Retrying {
        run_after,
        attempts: job.attempts,
    })
}

/// The next ready job of `queue`, leased to `owner`.
fn lease_in(
    c: &Connection,
    queue: &str,
    owner: &str,
    ttl_ms: i64,
) -> Result<Option<Job>, QueueError> {
    // The queue's name is written into the SQL as a literal, not bound: with STAT4 (which
    // the bundled SQLite enables) a bound value in an indexed equality makes SQLite
    // re-prepare the statement at every new binding, which cost a fifth of the writer's
    // time. So one cached statement per queue. ?1 is still bound (to the same name) but
    // unused, unless the name holds a NUL, which a literal cannot: then ?1 is used.
    let target = if queue.contains('\0') {
        "?1".to_string()
    } else {
        format!("'{}'", queue.replace('\'', "''"))
    };
    let sql = format!(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?2, lease_expires_at = ?3,
            started_at = ?4, updated_at = ?4, progress = NULL, progress_message = NULL
         WHERE id = (SELECT id FROM jobs WHERE queue = {target} AND state IN ('pending','retrying') AND run_after <= ?4
                     ORDER BY priority DESC, id LIMIT 1)
         RETURNING {JOB_COLUMNS}"
    );
    let now = now_ms();
    Ok(c.prepare_cached(&sql)?
        .query_row(params![queue, owner, now + ttl_ms, now], job_from_row)
        .optional()?)
}

/// Marks `owner`'s lease of job `id` succeeded; false when the lease is not theirs.
fn complete_in(c: &Connection, id: i64, owner: &str) -> Result<bool, QueueError> {
    let now = now_ms();
    Ok(c.prepare_cached(
        "UPDATE jobs SET state = 'succeeded', lease_owner = NULL, lease_expires_at = NULL, progress = 1.0,
            updated_at = ?3, finished_at = ?3 WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
    )?
    .execute(params![id, owner, now])?
        == 1)
}

fn leased_job(c: &Connection, id: i64, owner: &str) -> Result<Option<Job>, QueueError> {
    Ok(c.query_row(
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1 AND state = 'running' AND lease_owner = ?2"),
        params![id, owner],
        job_from_row,
    )
    .optional()?)
}

impl JobStore for SqliteStore {
    fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<EnqueueOutcome>, QueueError> {
        self.write(move |c| {
            let now = now_ms();
            let mut insert = c.prepare_cached(
                "INSERT INTO jobs (queue, key, payload, priority, state, max_attempts, run_after, timeout_ms, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, ?6, ?6) ON CONFLICT (queue, key) DO NOTHING",
            )?;
            let mut existing = c.prepare_cached("SELECT id, state FROM jobs WHERE queue = ?1 AND key = ?2")?;
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
                    out.push(EnqueueOutcome::Inserted { id: c.last_insert_rowid() });
                } else {
                    let (id, state): (i64, String) = existing.query_row(params![j.queue, j.key], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    out.push(if state == "succeeded" {
                        EnqueueOutcome::AlreadyDone { id }
                    } else {
                        EnqueueOutcome::AlreadyQueued { id }
                    });
                }
            }
            Ok(out)
        })
    }

    fn lease(&self, queue: &str, owner: &str, ttl_ms: i64) -> Result<Option<Job>, QueueError> {
        let (queue, owner) = (queue.to_string(), owner.to_string());
        self.write_single(move |c| lease_in(c, &queue, &owner, ttl_ms))
    }

    fn heartbeat(&self, id: i64, owner: &str, ttl_ms: i64) -> Result<bool, QueueError> {
        let owner = owner.to_string();
        self.write(move |c| {
            let now = now_ms();
            Ok(c.execute(
                "UPDATE jobs SET lease_expires_at = ?3, updated_at = ?4 WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
                params![id, owner, now + ttl_ms, now],
            )? == 1)
        })
    }

    fn progress(
        &self,
        id: i64,
        owner: &str,
        value: f64,
        message: Option<String>,
    ) -> Result<bool, QueueError> {
        let owner = owner.to_string();
        self.write(move |c| {
            Ok(c.execute(
                "UPDATE jobs SET progress = ?3, progress_message = ?4, updated_at = ?5
                 WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
                params![id, owner, value.clamp(0.0, 1.0), message, now_ms()],
            )? == 1)
        })
    }

    fn complete(&self, id: i64, owner: &str) -> Result<bool, QueueError> {
        let owner = owner.to_string();
        self.write_single(move |c| complete_in(c, id, &owner))
    }

    fn fail(
        &self,
        id: i64,
        owner: &str,
        failure: Failure,
        backoff: &Backoff,
    ) -> Result<FailOutcome, QueueError> {
        let (owner, backoff) = (owner.to_string(), *backoff);
        self.write(move |c| match leased_job(c, id, &owner)? {
            None => Ok(FailOutcome::NotLeased),
            Some(job) => record_failure(c, &job, &failure, &backoff),
        })
    }

    fn quarantine_now(&self, id: i64, owner: &str, failure: Failure) -> Result<bool, QueueError> {
        let owner = owner.to_string();
        self.write(move |c| match leased_job(c, id, &owner)? {
            None => Ok(false),
            Some(mut job) => {
                job.attempts = job.attempts.max(job.max_attempts);
                record_failure(c, &job, &failure, &Backoff::default())?;
                Ok(true)
            }
        })
    }

    fn rescue(
        &self,
        current_owner_prefix: Option<&str>,
        backoff: &Backoff,
    ) -> Result<Vec<(i64, FailOutcome)>, QueueError> {
        let (prefix, backoff) = (current_owner_prefix.map(|p| format!("{p}%")), *backoff);
        self.write(move |c| {
            let now = now_ms();
            let jobs: Vec<Job> = c
                .prepare(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'running'
                     AND (lease_expires_at < ?1 OR (?2 IS NOT NULL AND (lease_owner IS NULL OR lease_owner NOT LIKE ?2)))"
                ))?
                .query_map(params![now, prefix], job_from_row)?
                .collect::<Result<_, _>>()?;
            let mut out = Vec::new();
            for job in jobs {
                let failure = Failure {
                    class: steward_events::ExitClass::LeaseExpired,
                    error: format!(
                        "lease held by {} expired",
                        job.lease_owner.as_deref().unwrap_or("?")
                    ),
                    stderr_tail: None,
                };
                out.push((job.id, record_failure(c, &job, &failure, &backoff)?));
            }
            Ok(out)
        })
    }

    fn stats(&self, queue: Option<&str>) -> Result<Stats, QueueError> {
        self.read(|c| {
            let mut counts = std::collections::BTreeMap::new();
            for st in JobState::ALL {
                counts.insert(st.as_str().to_string(), 0);
            }
            let mut q = c.prepare("SELECT state, COUNT(*) FROM jobs WHERE (?1 IS NULL OR queue = ?1) GROUP BY state")?;
            for row in q.query_map(params![queue], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
                let (st, n) = row?;
                counts.insert(st, n as u64);
            }
            let minute_ago = now_ms() - 60_000;
            let recent: i64 = c.query_row(
                "SELECT COUNT(*) FROM jobs WHERE state = 'succeeded' AND finished_at >= ?2 AND (?1 IS NULL OR queue = ?1)",
                params![queue, minute_ago],
                |r| r.get(0),
            )?;
            let left = counts["pending"] + counts["retrying"] + counts["running"];
            let oldest_running = c
                .query_row(
                    &format!(
                        "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'running' AND (?1 IS NULL OR queue = ?1) ORDER BY started_at LIMIT 1"
                    ),
                    params![queue],
                    job_from_row,
                )
                .optional()?;
            Ok(Stats {
                queue: queue.map(str::to_string),
                counts,
                succeeded_last_minute: recent as u64,
                eta_seconds: (recent > 0).then(|| left * 60 / recent as u64),
                oldest_running,
            })
        })
    }

    fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, QueueError> {
        self.read(|c| {
            let mut q = c.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR queue = ?1) AND (?2 IS NULL OR state = ?2) ORDER BY id LIMIT ?3"
            ))?;
            let rows = q.query_map(
                params![filter.queue, filter.state.map(|s| s.as_str()), filter.limit.map_or(-1, |l| l as i64)],
                job_from_row,
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn get(&self, id: i64) -> Result<Option<(Job, Vec<Attempt>)>, QueueError> {
        self.read(|c| {
            let Some(job) = c
                .query_row(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"), params![id], job_from_row)
                .optional()?
            else {
                return Ok(None);
            };
            let mut q = c.prepare(
                "SELECT n, owner, started_at, ended_at, class, error, stderr_tail FROM attempts WHERE job_id = ?1 ORDER BY n",
            )?;
            let attempts = q
                .query_map(params![id], |r| {
                    let class: Option<String> = r.get(4)?;
                    Ok(Attempt {
                        n: r.get(0)?,
                        owner: r.get(1)?,
                        started_at: r.get(2)?,
                        ended_at: r.get(3)?,
                        class: class.and_then(|c| serde_json::from_str(&c).ok()),
                        error: r.get(5)?,
                        stderr_tail: r.get(6)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(Some((job, attempts)))
        })
    }
}
