//! What `up` checks before anything starts, so that it fails whole instead of
//! half-starting: every program exists, and the plan fits the host (unless `--force`).

use anyhow::{bail, Result};
use std::path::Path;
use steward_config::Config;

/// Checks what can be checked before anything starts, so `up` fails whole instead of
/// half-starting: every program exists, and the plan fits the host (unless `force`).
pub fn preflight(
    config: &Config,
    sysroot: Option<&Path>,
    force: bool,
) -> Result<Vec<steward_plan::Instance>> {
    for svc in config.workloads() {
        if let Err(why) = steward_supervise::preflight(svc) {
            bail!(
                "{}: services.{}.command: {why}",
                config.path.display(),
                svc.name
            );
        }
    }
    let facts = crate::node::gather(sysroot, &config.state_dir)?;
    let plan = crate::node::plan(config, &facts)?;
    if !plan.admission.admitted {
        if force {
            eprintln!("{}", steward_plan::render(&plan));
            eprintln!(
                "WARNING: the plan does not fit this host; starting anyway because of --force"
            );
        } else {
            eprint!("{}", steward_plan::render(&plan));
            let first = &plan.admission.refusals[0];
            bail!(
                "{}: {}: {} (refusing to start; fix the config, or `steward up --force` to start anyway)",
                config.path.display(),
                first.key,
                first.message
            );
        }
    }
    Ok(plan.instances)
}
