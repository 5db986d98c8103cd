//! The job queue. It knows nothing about processes: jobs go in, leases go out, outcomes
//! come back. The store is SQLite in WAL mode with `synchronous=FULL`; every transition is
//! one transaction, and concurrent transitions share a commit (group commit), so
//! durability does not cost one fsync per job.

mod error;
mod inputs;
mod integrity;
mod job;
mod sqlite;

pub use error::QueueError;
pub use inputs::{
    collect_inputs, enqueue_files, key_for, EnqueueSummary, FileJobs, InputKey, InputWalk,
};
pub use integrity::{backup, list_backups, restore, Backup};
pub use job::{
    Attempt, EnqueueOutcome, FailOutcome, Failure, Job, JobFilter, JobState, NewJob, Stats,
};
pub use sqlite::SqliteStore;

/// Milliseconds since the Unix epoch: every timestamp in the queue.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The store behind a queue. SQLite is the embedded one.
pub trait JobStore: Send + Sync {
    /// Inserts jobs whose `(queue, key)` is new; reports the others as already queued or
    /// already done (the done-set).
    fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<EnqueueOutcome>, QueueError>;
    /// Leases the next ready job of `queue` to `owner` until `now + ttl`.
    fn lease(&self, queue: &str, owner: &str, ttl_ms: i64) -> Result<Option<Job>, QueueError>;
    /// Extends a lease; false when the lease is no longer `owner`'s.
    fn heartbeat(&self, id: i64, owner: &str, ttl_ms: i64) -> Result<bool, QueueError>;
    fn progress(
        &self,
        id: i64,
        owner: &str,
        value: f64,
        message: Option<String>,
    ) -> Result<bool, QueueError>;
    /// Marks a leased job succeeded; false when the lease is no longer `owner`'s.
    fn complete(&self, id: i64, owner: &str) -> Result<bool, QueueError>;
    /// Records a failed attempt: retried after a backoff, or quarantined after `max_attempts`.
    fn fail(
        &self,
        id: i64,
        owner: &str,
        failure: Failure,
        backoff: &steward_config::Backoff,
    ) -> Result<FailOutcome, QueueError>;
    /// Fails with `LeaseExpired` every running job whose lease expired, and, given
    /// `current_owner_prefix` (this agent's run), every lease held by anyone else: an agent
    /// that died.
    fn rescue(
        &self,
        current_owner_prefix: Option<&str>,
        backoff: &steward_config::Backoff,
    ) -> Result<Vec<(i64, FailOutcome)>, QueueError>;
    /// Quarantines a leased job at once, without retries (an input that must never run).
    fn quarantine_now(&self, id: i64, owner: &str, failure: Failure) -> Result<bool, QueueError>;
    fn stats(&self, queue: Option<&str>) -> Result<Stats, QueueError>;
    fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, QueueError>;
    fn get(&self, id: i64) -> Result<Option<(Job, Vec<Attempt>)>, QueueError>;
}
