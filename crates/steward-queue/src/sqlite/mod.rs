//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`. Transitions go
//! to the writer thread, which group-commits them and replies through a oneshot once they
//! are durable; reads run on tokio's blocking pool. So no call blocks the async runtime.

mod filter;
mod nodes;
mod reads;
mod rows;
mod schema;
mod transitions;
mod writer;

use crate::backups;
use crate::job::{
    Attempt, EnqueueOutcome, FailOutcome, Failure, Job, JobFilter, JobState, Lease, NewJob,
    Selection, Stats,
};
use crate::nodes::{NodeInfo, NodeRow};
use crate::{JobStore, QueueError};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use steward_config::Backoff;
use writer::{Op, Reply, Run};

pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::Sender<Op>,
    reader: Arc<Mutex<Connection>>,
}

/// Milliseconds of a duration, as SQL stores times.
fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

impl SqliteStore {
    /// Opens (or creates) the queue at `path`. An existing file that is not a healthy
    /// queue is refused, never recreated: the error names the newest good backup.
    pub fn open(path: &Path) -> Result<SqliteStore, QueueError> {
        Self::open_with(path, true)
    }

    /// Opens an existing queue; never creates one (the read-only commands: a typo in
    /// `--state-dir` must not conjure an empty queue).
    pub fn open_existing(path: &Path) -> Result<SqliteStore, QueueError> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, create: bool) -> Result<SqliteStore, QueueError> {
        let existed = path.exists();
        if !existed && !create {
            return Err(QueueError::Invalid(format!(
                "there is no queue at {}; nothing has been enqueued there yet (check --state-dir, or add jobs with `steward queue add`)",
                path.display()
            )));
        }
        let sql = |source| QueueError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        // A file that was there and does not open as a queue is damaged, not new.
        let refuse = |e: rusqlite::Error| {
            if existed {
                backups::damaged(path, e.to_string())
            } else {
                sql(e)
            }
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .map_err(refuse)?;
        schema::configure(&conn).map_err(refuse)?;
        if existed {
            let check: String = conn
                .query_row("PRAGMA quick_check", [], |r| r.get(0))
                .map_err(|e| backups::damaged(path, e.to_string()))?;
            if check != "ok" {
                return Err(backups::damaged(path, format!("quick_check: {check}")));
            }
        }
        schema::migrate(&conn).map_err(|e| match e {
            schema::MigrateError::Sql(e) => refuse(e),
            schema::MigrateError::TooNew(why) => {
                QueueError::Invalid(format!("{}: {why}", path.display()))
            }
        })?;
        let reader =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(sql)?;
        schema::configure(&reader).map_err(sql)?;
        let (tx, rx) = mpsc::channel::<Op>();
        std::thread::Builder::new()
            .name("steward-queue-writer".into())
            .spawn(move || writer::writer_loop(conn, rx))
            .map_err(|source| QueueError::Io {
                what: "cannot start the queue writer for",
                path: path.to_path_buf(),
                source,
            })?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: tx,
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in the writer's next group commit; resolves once it is durable.
    async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, QueueError> + Send + 'static,
    ) -> Result<R, QueueError> {
        self.submit(f, false).await
    }

    /// [`Self::write`] for a transition that is one SQL statement.
    async fn write_single<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, QueueError> + Send + 'static,
    ) -> Result<R, QueueError> {
        self.submit(f, true).await
    }

    async fn submit<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, QueueError> + Send + 'static,
        single_statement: bool,
    ) -> Result<R, QueueError> {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<R, QueueError>>();
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
        rx.await.map_err(|_| QueueError::WriterGone)?
    }

    /// Runs `f` on the reader connection, on the blocking pool.
    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, QueueError> + Send + 'static,
    ) -> Result<R, QueueError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || f(&reader.lock().unwrap_or_else(|p| p.into_inner())))
            .await
            .map_err(|_| QueueError::WriterGone)?
    }
}

#[async_trait::async_trait]
impl JobStore for SqliteStore {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<EnqueueOutcome>, QueueError> {
        for j in &jobs {
            crate::job::check_new_job(j)?;
        }
        self.write(move |c| transitions::enqueue(c, jobs)).await
    }

    async fn lease(
        &self,
        queue: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Job>, QueueError> {
        crate::job::no_nul("queue name", queue)?;
        crate::job::no_nul("lease owner", owner)?;
        let (queue, owner) = (queue.to_string(), owner.to_string());
        self.write_single(move |c| transitions::lease(c, &queue, &owner, ms(ttl)))
            .await
    }

    async fn complete_and_lease(
        &self,
        done: &Lease,
        queue: &str,
        ttl: Duration,
    ) -> Result<(bool, Option<Job>), QueueError> {
        let (done, queue) = (done.clone(), queue.to_string());
        self.write(move |c| {
            let completed = transitions::complete(c, &done)?;
            Ok((
                completed,
                transitions::lease(c, &queue, &done.owner, ms(ttl))?,
            ))
        })
        .await
    }

    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<bool, QueueError> {
        let lease = lease.clone();
        self.write_single(move |c| transitions::heartbeat(c, &lease, ms(ttl)))
            .await
    }

    async fn progress(
        &self,
        lease: &Lease,
        value: f64,
        message: Option<String>,
    ) -> Result<bool, QueueError> {
        let lease = lease.clone();
        self.write_single(move |c| transitions::progress(c, &lease, value, message))
            .await
    }

    async fn complete(&self, lease: &Lease) -> Result<bool, QueueError> {
        let lease = lease.clone();
        self.write_single(move |c| transitions::complete(c, &lease))
            .await
    }

    async fn fail(
        &self,
        lease: &Lease,
        failure: Failure,
        backoff: &Backoff,
    ) -> Result<FailOutcome, QueueError> {
        let (lease, backoff) = (lease.clone(), *backoff);
        self.write(move |c| transitions::fail(c, &lease, &failure, &backoff))
            .await
    }

    async fn quarantine_now(&self, lease: &Lease, failure: Failure) -> Result<bool, QueueError> {
        let lease = lease.clone();
        self.write(move |c| transitions::quarantine_now(c, &lease, &failure))
            .await
    }

    async fn lease_many(
        &self,
        queue: &str,
        owners: &[String],
        ttl: Duration,
    ) -> Result<Vec<Job>, QueueError> {
        crate::job::no_nul("queue name", queue)?;
        for o in owners {
            crate::job::no_nul("lease owner", o)?;
        }
        let (queue, owners) = (queue.to_string(), owners.to_vec());
        self.write(move |c| {
            let mut out = Vec::new();
            for owner in &owners {
                match transitions::lease(c, &queue, owner, ms(ttl))? {
                    Some(job) => out.push(job),
                    None => break,
                }
            }
            Ok(out)
        })
        .await
    }

    async fn rescue(
        &self,
        node_ttl: Duration,
        backoff: &Backoff,
    ) -> Result<Vec<(i64, FailOutcome)>, QueueError> {
        let backoff = *backoff;
        self.write(move |c| transitions::rescue(c, ms(node_ttl), &backoff))
            .await
    }

    async fn prune(&self, older_than: Duration, batch: usize) -> Result<u64, QueueError> {
        self.write_single(move |c| transitions::prune(c, ms(older_than), batch))
            .await
    }

    async fn join(&self, node: &NodeInfo, node_ttl: Duration) -> Result<(), QueueError> {
        let node = node.clone();
        self.write(move |c| nodes::join(c, &node, node_ttl)).await
    }

    async fn beat(&self, node: &NodeInfo) -> Result<bool, QueueError> {
        let node = node.clone();
        self.write_single(move |c| nodes::beat(c, &node)).await
    }

    async fn leave(&self, node: &NodeInfo) -> Result<(), QueueError> {
        let node = node.clone();
        self.write(move |c| nodes::leave(c, &node)).await
    }

    async fn nodes(&self, node_ttl: Duration) -> Result<Vec<NodeRow>, QueueError> {
        self.read(move |c| nodes::nodes(c, node_ttl)).await
    }

    async fn lead(&self, node: &NodeInfo, ttl: Duration) -> Result<bool, QueueError> {
        let node = node.clone();
        self.write_single(move |c| nodes::lead(c, &node, ttl)).await
    }

    async fn retry(&self, which: Selection) -> Result<u64, QueueError> {
        self.write(move |c| transitions::retry(c, &which)).await
    }

    async fn cancel(&self, which: Selection) -> Result<u64, QueueError> {
        self.write(move |c| transitions::cancel(c, &which)).await
    }

    async fn mark_succeeded(&self, ids: Vec<i64>) -> Result<u64, QueueError> {
        self.write(move |c| transitions::mark_succeeded(c, &ids))
            .await
    }

    async fn purge(&self, state: JobState, older_than: Duration) -> Result<u64, QueueError> {
        self.write(move |c| transitions::purge(c, state, ms(older_than)))
            .await
    }

    async fn stats(&self, queue: Option<&str>) -> Result<Stats, QueueError> {
        let queue = queue.map(str::to_string);
        self.read(move |c| reads::stats(c, queue.as_deref())).await
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, QueueError> {
        let filter = filter.clone();
        self.read(move |c| reads::list(c, &filter)).await
    }

    async fn get(&self, id: i64) -> Result<Option<(Job, Vec<Attempt>)>, QueueError> {
        self.read(move |c| reads::get(c, id)).await
    }

    /// An online backup through SQLite's backup API: consistent while the agent writes.
    async fn backup(&self, keep: usize) -> Result<PathBuf, QueueError> {
        let (db, reader) = (self.path.clone(), self.reader.clone());
        tokio::task::spawn_blocking(move || {
            backups::rotate_into(&db, keep, |dest| {
                let c = reader.lock().unwrap_or_else(|p| p.into_inner());
                let mut out = Connection::open(dest)?;
                let b = rusqlite::backup::Backup::new(&c, &mut out)?;
                b.run_to_completion(1024, Duration::ZERO, None)?;
                Ok(())
            })
        })
        .await
        .map_err(|_| QueueError::WriterGone)?
    }
}
