//! `steward.toml`: parsing, validation and the resolved model the rest of steward uses.
//!
//! Parsing is strict: unknown keys are errors, sizes need an explicit unit, durations are
//! humantime strings. Every error names the file, line, column and key, and says what was
//! expected, because the person reading it is usually paged at night.

mod backoff;
mod config;
mod context;
mod cpus;
mod deps;
mod duration;
mod error;
mod escape;
mod gateway;
mod gpu;
mod health;
mod http;
mod node;
mod parse;
mod pipeline;
mod queue;
mod service;
mod signal;
mod size;
mod state_dir;
pub mod template;
mod worker;

pub use backoff::{Backoff, CrashLoop};
pub use config::Config;
pub use cpus::CpuList;
pub use deps::{depths, Condition};
pub use duration::HumanDuration;
pub use error::{ConfigError, Location};
pub use escape::{escaped, escaped_os};
pub use gateway::{Backend, Gateway, Retries, RetryBudget, Route, Timeouts};
pub use gpu::{AllGpus, CudaEnv, GpuSelector};
pub use health::{HealthCheck, Probe};
pub use http::{Http, HttpToken};
pub use node::{check_node_name, hostname, Node};
pub use pipeline::{OnStall, Pipeline, PipelineMode, QuarantineMode};
pub use queue::{mask_password, OnUnreachable, QueueSettings, QueueUrl};
pub use service::{OnFatalFinding, RestartPolicy, Service};
pub use signal::StopSignal;
pub use size::ByteSize;
pub use state_dir::{StateDir, DEFAULT_STATE_DIR};
pub use worker::LogRotation;

use std::path::Path;

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Only the state dir the config at `path` names: for the commands that talk to its agent
/// (`ps`, `down`, `logs`…), which must work without the secrets `up` reads from the
/// environment (`env:VAR` of a queue URL or gateway keys).
pub fn load_state_dir(path: &Path) -> Result<StateDir, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let raw = parse::parse(&text, path)?;
    Ok(config::state_dir_of(&raw, path))
}

/// Parses and validates config text; `path` names the file in errors and anchors relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let raw = parse::parse(text, path)?;
    config::resolve(raw, text, path)
}
