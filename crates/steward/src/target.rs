//! Which state dir a command talks to: `--state-dir`, or the one the config names.

use crate::cli::Target;
use anyhow::{Context, Result};
use std::path::PathBuf;

pub fn state_dir(target: &Target) -> Result<PathBuf> {
    if let Some(dir) = &target.state_dir {
        return Ok(std::path::absolute(dir).unwrap_or_else(|_| dir.clone()));
    }
    let config = steward_config::load(&target.file)
        .with_context(|| "cannot tell which agent to talk to".to_string())?;
    Ok(config.state_dir)
}
