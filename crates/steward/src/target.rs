//! Which state dir a command talks to: `--state-dir`, or the one the config names.

use crate::cli::Target;
use anyhow::{Context, Result};
use steward_config::StateDir;

pub fn state_dir(target: &Target) -> Result<StateDir> {
    if let Some(dir) = &target.state_dir {
        return Ok(StateDir::new(dir));
    }
    let config = steward_config::load(&target.file())
        .with_context(|| "cannot tell which agent to talk to".to_string())?;
    Ok(config.state_dir)
}
