//! The process runtime: a [`Supervisor`] owns one task per service instance. Each run of a
//! process, a service's or a per-job pipeline's, is one [`Execution`]: spawned within
//! limits (process group, rlimits, `oom_score_adj`, affinity, cgroup), reaped through the
//! [`Reaper`], classified, cleaned up. The instance's task restarts it by policy.
//!
//! Effects live at the edges (`spawn`, `cgroup`, `procfs`, `reaper`); the decisions
//! (`backoff`, `classify`, the health state machine) are pure functions with unit tests.

pub mod backoff;
pub mod cgroup;
pub mod classify;
mod cleanup;
mod context;
mod error;
mod execution;
mod handle;
pub mod health;
mod job;
pub mod kmsg;
mod launch;
pub mod leftovers;
mod notify;
pub mod output;
pub mod procfs;
mod pseudo_file;
mod reaper;
mod reload;
mod service;
mod spawn;
mod supervisor;
mod watchdog;

pub use cgroup::{CgroupDriver, CgroupError};
pub use context::{InstanceExit, SupervisorContext};
pub use error::SuperviseError;
pub use execution::{Ended, Execution, SpawnError, Spec, Watched};
pub use job::{JobRun, KillWhen, TAIL_BYTES};
pub use output::LogFiles;
pub use reaper::Reaper;
pub use spawn::preflight;
pub use supervisor::Supervisor;
