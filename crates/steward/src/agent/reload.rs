//! `steward reload` and SIGHUP (outside PID 1): the config read again and checked as `up`
//! would check it; only then the services' difference applied. A bad config changes
//! nothing. Sections the running agent cannot change in place are named, not applied.

use super::preflight::preflight;
use std::path::PathBuf;
use std::sync::Arc;
use steward_api::{ReloadReport, Response};
use steward_config::Config;
use steward_supervise::Supervisor;

/// How the agent was started, for checking a new config the same way.
#[derive(Clone)]
pub(super) struct Reloader {
    pub config: Arc<Config>,
    /// The state dir came from `--state-dir`, not from the config.
    pub state_dir_flag: bool,
    pub sysroot: Option<PathBuf>,
    pub force: bool,
}

impl Reloader {
    pub async fn reload(&self, supervisor: &Arc<Supervisor>) -> Response {
        match self.try_reload(supervisor).await {
            Ok(report) => Response {
                reload: Some(report),
                ..Response::ok()
            },
            Err(why) => Response::error(format!(
                "the new config is refused and nothing changed: {why}"
            )),
        }
    }

    async fn try_reload(&self, supervisor: &Arc<Supervisor>) -> Result<ReloadReport, String> {
        let old = &self.config;
        let mut new = steward_config::load(&old.path).map_err(|e| e.to_string())?;
        if self.state_dir_flag {
            new.state_dir = old.state_dir.clone();
        }
        if new.state_dir != old.state_dir {
            return Err(format!(
                "state_dir changed ({} to {}); that takes `steward down` and `steward up`",
                old.state_dir, new.state_dir
            ));
        }
        let (sysroot, force, checked) = (self.sysroot.clone(), self.force, new.clone());
        let instances = tokio::task::spawn_blocking(move || {
            preflight(&checked, sysroot.as_deref(), force)
                .map_err(|e| steward_net::one_line(e.as_ref()))
        })
        .await
        .map_err(|e| e.to_string())??;
        let mut report = supervisor
            .reload(&new, instances)
            .await
            .map_err(|e| e.to_string())?;
        report.not_applied = not_applied(old, &new);
        Ok(report)
    }
}

/// The sections that differ but need an agent restart to change (compared through their
/// JSON form, and the gateway's keys, which it leaves out).
fn not_applied(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let keys = |c: &Config| c.gateway.as_ref().map(|g| g.api_keys.clone());
    if serde_json::to_value(&old.gateway).ok() != serde_json::to_value(&new.gateway).ok()
        || keys(old) != keys(new)
    {
        out.push("[gateway]".to_string());
    }
    if serde_json::to_value(&old.pipelines).ok() != serde_json::to_value(&new.pipelines).ok() {
        out.push("[pipelines]".to_string());
    }
    if old.queue != new.queue {
        out.push("[queue]".to_string());
    }
    out
}
