//! The shared store: PostgreSQL through a small pool of tokio-postgres connections, for a
//! queue that many nodes work from. The same semantics as SQLite (the conformance suite
//! runs on both); claims use `FOR UPDATE SKIP LOCKED`, times are the server's, and
//! LISTEN/NOTIFY wakes idle workers early (a hint only: they poll as well).

mod connect;
mod error;
mod filter;
mod listen;
mod nodes;
pub mod pgpass;
mod reads;
mod rows;
mod schema;
mod transitions;

use crate::job::{check_new_job, no_nul};
use crate::job::{
    Attempt, EnqueueOutcome, FailOutcome, Failure, Job, JobFilter, JobState, Lease, NewJob,
    Selection, Stats,
};
use crate::nodes::{NodeInfo, NodeRow};
use crate::{JobStore, QueueError};
use error::{pg, pool};
use std::path::PathBuf;
use std::time::Duration;
use steward_config::Backoff;
use tokio::sync::broadcast;

pub use schema::current as schema_version;

/// Whether `url` is a PostgreSQL URL this steward can connect with, without connecting
/// (`config check`).
pub fn check_url(url: &str, masked: &str) -> Result<(), QueueError> {
    connect::config(url, masked).map(drop)
}

/// Connections kept at most: claims, completions and reads of one agent.
const POOL_SIZE: usize = 16;
/// Rows sent in one enqueue statement.
const ENQUEUE_CHUNK: usize = 1_000;

pub struct PgStore {
    pool: deadpool_postgres::Pool,
    masked: String,
    notify: bool,
    wake: broadcast::Sender<String>,
    listener: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(l) = &self.listener {
            l.abort();
        }
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// How [`PgStore::open`] treats a database without steward's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgOpen {
    /// Create them (the agent, `queue add`).
    Create,
    /// Refuse: a read must not create a queue.
    Existing,
}

impl PgStore {
    /// Connects to `url` (shown as `masked` everywhere), brings the schema up to date
    /// under an advisory lock, and starts listening for wake-ups when `notify`.
    pub async fn open(
        url: &str,
        masked: &str,
        notify: bool,
        how: PgOpen,
    ) -> Result<PgStore, QueueError> {
        let cfg = connect::config(url, masked)?;
        let mgr = deadpool_postgres::Manager::from_config(
            cfg.clone(),
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = deadpool_postgres::Pool::builder(mgr)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(connect::CONNECT_TIMEOUT))
            .wait_timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|e| QueueError::Invalid(format!("{masked}: {e}")))?;
        let unreachable =
            |e: QueueError| QueueError::Database(format!("cannot reach {masked}: {}", strip(&e)));
        let mut client = pool.get().await.map_err(pool_err).map_err(unreachable)?;
        if how == PgOpen::Existing {
            let exists: bool = client
                .query_one("SELECT to_regclass('steward_schema') IS NOT NULL", &[])
                .await
                .map_err(pg)?
                .get(0);
            if !exists {
                return Err(QueueError::Invalid(format!(
                    "there is no steward queue in {masked} yet; nothing has been enqueued there (check [queue] url, or add jobs with `steward queue add`)"
                )));
            }
        }
        schema::migrate(&mut client, masked).await?;
        drop(client);
        let (wake, _) = broadcast::channel(64);
        let listener = notify.then(|| listen::spawn(cfg, wake.clone()));
        Ok(PgStore {
            pool,
            masked: masked.to_string(),
            notify,
            wake,
            listener,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, QueueError> {
        self.pool.get().await.map_err(pool_err)
    }

    /// Wakes the other nodes' idle workers for `queues`, after the jobs are committed.
    async fn hint(&self, queues: &[&str]) {
        if !self.notify {
            return;
        }
        let Ok(c) = self.client().await else { return };
        let mut seen: Vec<&str> = queues.to_vec();
        seen.sort_unstable();
        seen.dedup();
        for q in seen {
            let _ = c
                .execute("SELECT pg_notify($1, $2)", &[&listen::CHANNEL, &q])
                .await;
        }
    }
}

fn pool_err(e: deadpool_postgres::PoolError) -> QueueError {
    pool(e)
}

/// An error's text without the "queue database: " its Display starts with.
fn strip(e: &QueueError) -> String {
    match e {
        QueueError::Database(s) => s.clone(),
        other => other.to_string(),
    }
}

#[async_trait::async_trait]
impl JobStore for PgStore {
    fn describe(&self) -> String {
        self.masked.clone()
    }

    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<EnqueueOutcome>, QueueError> {
        for j in &jobs {
            check_new_job(j)?;
        }
        let c = self.client().await?;
        let mut out = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(ENQUEUE_CHUNK) {
            out.extend(transitions::enqueue(&c, chunk).await?);
        }
        drop(c);
        let queues: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
        self.hint(&queues).await;
        Ok(out)
    }

    async fn lease(
        &self,
        queue: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Job>, QueueError> {
        Ok(self
            .lease_many(queue, &[owner.to_string()], ttl)
            .await?
            .into_iter()
            .next())
    }

    async fn lease_many(
        &self,
        queue: &str,
        owners: &[String],
        ttl: Duration,
    ) -> Result<Vec<Job>, QueueError> {
        no_nul("queue name", queue)?;
        for o in owners {
            no_nul("lease owner", o)?;
        }
        let c = self.client().await?;
        transitions::lease_many(&c, queue, owners, ms(ttl)).await
    }

    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<bool, QueueError> {
        transitions::heartbeat(&self.client().await?, lease, ms(ttl)).await
    }

    async fn progress(
        &self,
        lease: &Lease,
        value: f64,
        message: Option<String>,
    ) -> Result<bool, QueueError> {
        if let Some(m) = &message {
            no_nul("progress message", m)?;
        }
        transitions::progress(&self.client().await?, lease, value, message).await
    }

    async fn complete(&self, lease: &Lease) -> Result<bool, QueueError> {
        transitions::complete(&self.client().await?, lease).await
    }

    async fn fail(
        &self,
        lease: &Lease,
        failure: Failure,
        backoff: &Backoff,
    ) -> Result<FailOutcome, QueueError> {
        let failure = without_nul(failure);
        transitions::fail(&mut self.client().await?, lease, &failure, backoff).await
    }

    async fn quarantine_now(&self, lease: &Lease, failure: Failure) -> Result<bool, QueueError> {
        let failure = without_nul(failure);
        transitions::quarantine_now(&mut self.client().await?, lease, &failure).await
    }

    async fn rescue(
        &self,
        node_ttl: Duration,
        backoff: &Backoff,
    ) -> Result<Vec<(i64, FailOutcome)>, QueueError> {
        transitions::rescue(&mut self.client().await?, ms(node_ttl), backoff).await
    }

    async fn prune(&self, older_than: Duration, batch: usize) -> Result<u64, QueueError> {
        transitions::prune(&self.client().await?, ms(older_than), batch).await
    }

    async fn join(&self, node: &NodeInfo, node_ttl: Duration) -> Result<(), QueueError> {
        nodes::join(&mut self.client().await?, node, node_ttl).await
    }

    async fn beat(&self, node: &NodeInfo) -> Result<bool, QueueError> {
        nodes::beat(&self.client().await?, node).await
    }

    async fn leave(&self, node: &NodeInfo) -> Result<(), QueueError> {
        nodes::leave(&self.client().await?, node).await
    }

    async fn nodes(&self, node_ttl: Duration) -> Result<Vec<NodeRow>, QueueError> {
        nodes::nodes(&self.client().await?, node_ttl).await
    }

    async fn lead(&self, node: &NodeInfo, ttl: Duration) -> Result<bool, QueueError> {
        nodes::lead(&self.client().await?, node, ttl).await
    }

    fn wakeups(&self) -> Option<broadcast::Receiver<String>> {
        self.notify.then(|| self.wake.subscribe())
    }

    async fn retry(&self, which: Selection) -> Result<u64, QueueError> {
        let n = transitions::retry(&self.client().await?, &which).await?;
        if n > 0 {
            self.hint(&["*"]).await;
        }
        Ok(n)
    }

    async fn cancel(&self, which: Selection) -> Result<u64, QueueError> {
        transitions::cancel(&self.client().await?, &which).await
    }

    async fn mark_succeeded(&self, ids: Vec<i64>) -> Result<u64, QueueError> {
        transitions::mark_succeeded(&self.client().await?, &ids).await
    }

    async fn purge(&self, state: JobState, older_than: Duration) -> Result<u64, QueueError> {
        transitions::purge(&self.client().await?, state, ms(older_than)).await
    }

    async fn stats(&self, queue: Option<&str>) -> Result<Stats, QueueError> {
        reads::stats(&self.client().await?, queue).await
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, QueueError> {
        reads::list(&self.client().await?, filter).await
    }

    async fn get(&self, id: i64) -> Result<Option<(Job, Vec<Attempt>)>, QueueError> {
        reads::get(&self.client().await?, id).await
    }

    async fn backup(&self, _keep: usize) -> Result<PathBuf, QueueError> {
        Err(QueueError::Unsupported(format!(
            "the queue is in PostgreSQL ({}); its backups are PostgreSQL's job: pg_dump, or continuous archiving for point-in-time recovery",
            self.masked
        )))
    }
}

/// A failure's text with NUL bytes shown as `\0` (a process's output may hold them).
fn without_nul(mut f: Failure) -> Failure {
    f.error = f.error.replace('\0', "\\0");
    f.stderr_tail = f.stderr_tail.map(|t| t.replace('\0', "\\0"));
    f
}
