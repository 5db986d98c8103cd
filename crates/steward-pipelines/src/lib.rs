//! Pipelines: a queue bound to worker replicas. In `per-job` mode each job is one process
//! in a replica's slot, with its limits and timeout; in `lease` mode long-running workers
//! pull jobs over HTTP. Outcomes go back to the queue through the one `JobStore` seam;
//! after `max_attempts` the input is quarantined with a `reason.json`. A progress snapshot
//! and a stall watch keep a silent deadlock from going unnoticed.

mod confine;
mod fleet;
mod lease;
mod per_job;
mod progress;
mod quarantine;
mod readable;
mod reporter;
mod runner;
mod set;
mod stall;

pub use fleet::Fleet;
pub use lease::{LeaseBroker, LEASE_TTL};
pub use progress::{write_progress, PipelineProgress};
pub use runner::{PipelineRunner, RunSummary};
pub use set::{lease_listener, LeaseEndpoint, Pipelines, PipelinesError, Start};
