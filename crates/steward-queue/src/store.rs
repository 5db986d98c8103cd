//! The one seam between steward and where its jobs live. Pipelines, the lease API and the
//! CLI use only this trait; every store passes the conformance suite in
//! `tests/conformance.rs`. It is async at its edge: no implementation blocks the runtime
//! (SQLite commits on its writer thread and reads on the blocking pool).

use crate::job::{
    Attempt, EnqueueOutcome, FailOutcome, Failure, Job, JobFilter, JobState, Lease, NewJob,
    Selection, Stats,
};
use crate::nodes::{NodeInfo, NodeRow};
use crate::QueueError;
use std::path::PathBuf;
use std::time::Duration;
use steward_config::Backoff;

#[async_trait::async_trait]
pub trait JobStore: Send + Sync {
    /// Where the jobs are, for messages: a file, or a URL with its password masked.
    fn describe(&self) -> String;

    /// Inserts jobs whose `(queue, key)` is new; reports the others as already queued or
    /// already done (the done-set).
    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<EnqueueOutcome>, QueueError>;

    /// Leases the next ready job of `queue` (highest priority, then oldest) to `owner`
    /// for `ttl`; its attempt count goes up by one.
    async fn lease(
        &self,
        queue: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Job>, QueueError>;

    /// Claims up to `owners.len()` ready jobs of `queue` at once (priority, then age), the
    /// i-th to `owners[i]`: one round trip for every free slot.
    async fn lease_many(
        &self,
        queue: &str,
        owners: &[String],
        ttl: Duration,
    ) -> Result<Vec<Job>, QueueError> {
        let mut out = Vec::new();
        for owner in owners {
            match self.lease(queue, owner, ttl).await? {
                Some(job) => out.push(job),
                None => break,
            }
        }
        Ok(out)
    }

    /// Completes `done` and leases the next job in one round trip, for a worker that loops.
    /// True in the first place when `done` was still held.
    async fn complete_and_lease(
        &self,
        done: &Lease,
        queue: &str,
        ttl: Duration,
    ) -> Result<(bool, Option<Job>), QueueError> {
        let completed = self.complete(done).await?;
        Ok((completed, self.lease(queue, &done.owner, ttl).await?))
    }

    /// Extends a lease; false when it is no longer held.
    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<bool, QueueError>;

    /// Records how far a leased job is (0 to 1) and what it is doing; false when the lease
    /// is no longer held.
    async fn progress(
        &self,
        lease: &Lease,
        value: f64,
        message: Option<String>,
    ) -> Result<bool, QueueError>;

    /// Marks a leased job succeeded; false when the lease is no longer held.
    async fn complete(&self, lease: &Lease) -> Result<bool, QueueError>;

    /// Records a failed attempt: retried after a backoff, or quarantined after
    /// `max_attempts`. `NotLeased` when the lease is no longer held.
    async fn fail(
        &self,
        lease: &Lease,
        failure: Failure,
        backoff: &Backoff,
    ) -> Result<FailOutcome, QueueError>;

    /// Quarantines a leased job at once, without retries (an input that must never run).
    async fn quarantine_now(&self, lease: &Lease, failure: Failure) -> Result<bool, QueueError>;

    /// Fails with `LeaseExpired` every running job that no live run of a node holds: its
    /// lease expired, or its owner's `<node>/<run>/` is not the current run of a node that
    /// beat within `node_ttl` and has not stopped (the agent died, or restarted).
    async fn rescue(
        &self,
        node_ttl: Duration,
        backoff: &Backoff,
    ) -> Result<Vec<(i64, FailOutcome)>, QueueError>;

    /// Deletes at most `batch` finished jobs (succeeded, quarantined, cancelled) that
    /// finished longer than `older_than` ago; the leader calls it until it returns less
    /// than `batch`, so no one statement holds the table long.
    async fn prune(&self, older_than: Duration, batch: usize) -> Result<u64, QueueError>;

    /// Registers this run of a node. Refused with [`QueueError::NodeTaken`] while another
    /// live run holds the name (see [`crate::nodes::can_take_over`]).
    async fn join(&self, node: &NodeInfo, node_ttl: Duration) -> Result<(), QueueError>;

    /// Writes the node's heartbeat and what it says of itself; false when its name has
    /// since been taken over by another run (this one was thought dead).
    async fn beat(&self, node: &NodeInfo) -> Result<bool, QueueError>;

    /// Marks the node stopped (its leases are rescued at once) and gives up leadership.
    async fn leave(&self, node: &NodeInfo) -> Result<(), QueueError>;

    /// Every node that registered, with whether it is alive by `node_ttl` and who leads.
    async fn nodes(&self, node_ttl: Duration) -> Result<Vec<NodeRow>, QueueError>;

    /// Takes or keeps the one leader's lease for `ttl`; true while this run leads. The
    /// leader rescues the leases of dead nodes and prunes finished jobs.
    async fn lead(&self, node: &NodeInfo, ttl: Duration) -> Result<bool, QueueError>;

    /// Hints that a queue has new work (its name), where the store can send them
    /// (PostgreSQL's LISTEN/NOTIFY). Only a hint: callers poll as well.
    fn wakeups(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }

    /// Puts jobs back to pending with their attempts reset (running jobs are left alone).
    async fn retry(&self, which: Selection) -> Result<u64, QueueError>;

    /// Cancels jobs that have not finished.
    async fn cancel(&self, which: Selection) -> Result<u64, QueueError>;

    /// Marks jobs succeeded whose output is known to exist (`queue rebuild-done`); running
    /// jobs are left alone.
    async fn mark_succeeded(&self, ids: Vec<i64>) -> Result<u64, QueueError>;

    /// Deletes jobs in a finished `state` that finished longer than `older_than` ago.
    async fn purge(&self, state: JobState, older_than: Duration) -> Result<u64, QueueError>;

    async fn stats(&self, queue: Option<&str>) -> Result<Stats, QueueError>;

    /// Jobs matching `filter`, oldest first.
    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, QueueError>;

    /// One job and every attempt at it.
    async fn get(&self, id: i64) -> Result<Option<(Job, Vec<Attempt>)>, QueueError>;

    /// Takes a consistent backup and keeps the newest `keep`; returns where it went.
    async fn backup(&self, keep: usize) -> Result<PathBuf, QueueError>;
}
