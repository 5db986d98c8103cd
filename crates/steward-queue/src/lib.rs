//! The job queue. It knows nothing about processes: jobs go in, leases go out, outcomes
//! come back, all through the one [`JobStore`] seam. The embedded store is SQLite in WAL
//! mode with `synchronous=FULL`; every transition is one transaction, and concurrent
//! transitions share a commit (group commit), so durability does not cost one fsync per job.

mod backups;
mod error;
mod inputs;
mod job;
pub mod nodes;
mod postgres;
mod rebuild;
mod sqlite;
mod store;

pub use backups::{list_backups, restore, Backup};
pub use error::QueueError;
pub use inputs::{
    collect_inputs, enqueue_files, key_for, EnqueueSummary, FileJobs, InputKey, InputWalk,
};
pub use job::{
    Attempt, Counts, EnqueueOutcome, FailOutcome, Failure, Job, JobFilter, JobState, Lease, NewJob,
    Selection, Stats,
};
pub use nodes::{NodeInfo, NodeRow, NodeTaken};
pub use postgres::{
    check_url as check_pg_url, pgpass, schema_version as pg_schema_version, PgOpen, PgStore,
};
pub use rebuild::{rebuild_done, Rebuilt};
pub use sqlite::SqliteStore;
pub use store::JobStore;

/// Milliseconds since the Unix epoch: every timestamp in the queue.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
