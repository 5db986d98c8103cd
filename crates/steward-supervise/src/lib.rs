//! The process runtime: a [`Supervisor`] owns one task per service. Each task spawns its
//! process within limits (process group, rlimits, `oom_score_adj`, affinity, cgroup), waits
//! for it through the [`Reaper`], classifies how it ended, and restarts it by policy.
//!
//! Effects live at the edges (`spawn`, `cgroup`, `procfs`, `reaper`); the decisions
//! (`backoff`, `classify`) are pure functions with unit tests.

pub mod backoff;
pub mod cgroup;
pub mod classify;
mod cleanup;
pub mod health;
mod job;
mod kmsg;
mod notify;
mod output;
pub mod procfs;
mod reaper;
mod service;
mod spawn;
mod status;
mod supervisor;

pub use cgroup::{CgroupDriver, CgroupError};
pub use health::Health;
pub use job::{JobRun, KillWhen};
pub use output::LogFiles;
pub use reaper::Reaper;
pub use spawn::preflight;
pub use status::{ServiceState, ServiceStatus};
pub use supervisor::{InstanceExit, SuperviseError, Supervisor, SupervisorContext};
