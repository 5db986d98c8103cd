//! Which state dir a command talks to: `--state-dir`, or the one the config names.

use crate::cli::Target;
use anyhow::{Context, Result};
use std::path::Path;
use steward_config::{Config, ConfigError, StateDir};

pub fn state_dir(target: &Target) -> Result<StateDir> {
    if let Some(dir) = &target.state_dir {
        return Ok(StateDir::new(dir));
    }
    steward_config::load_state_dir(&target.file())
        .with_context(|| "cannot tell which agent to talk to".to_string())
}

/// The config `--file` names, run in `--state-dir` when that is given (as a systemd unit
/// or a container does: the config in /etc, the state in /var/lib).
pub fn config(target: &Target) -> Result<Config, ConfigError> {
    load(&target.file(), target.state_dir.as_deref())
}

/// The config at `path`, with `state_dir` in place of the one it names.
pub fn load(path: &Path, state_dir: Option<&Path>) -> Result<Config, ConfigError> {
    let mut config = steward_config::load(path)?;
    if let Some(dir) = state_dir {
        config.state_dir = StateDir::new(dir);
    }
    Ok(config)
}
