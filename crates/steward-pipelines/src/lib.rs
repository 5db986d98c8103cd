//! Pipelines: a queue bound to worker replicas. In `per-job` mode each job is one process
//! in a replica's slot, with its limits and timeout; its outcome goes back to the queue;
//! after `max_attempts` the input is quarantined with a `reason.json`. A progress snapshot
//! and a stall watchdog keep a silent deadlock (seed 001) from going unnoticed.

mod lease;
mod progress;
mod quarantine;
mod runner;

pub use lease::{LeaseBroker, LEASE_TTL_MS};
pub use progress::{write_progress, PipelineProgress};
pub use runner::{PipelineRunner, RunSummary};
