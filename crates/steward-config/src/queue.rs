//! `[queue]`: the job store's upkeep while the agent runs.

use crate::context::Ctx;
use crate::{ConfigError, HumanDuration};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub backup_interval: Option<HumanDuration>,
    pub backups_kept: Option<usize>,
}

/// Online backups of `queue.db` into `state_dir/backups/` while the agent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueueSettings {
    pub backup_interval: HumanDuration,
    /// The newest this many backups are kept.
    pub backups_kept: usize,
}

pub(crate) fn resolve(ctx: &Ctx, raw: Option<RawQueue>) -> Result<QueueSettings, ConfigError> {
    let raw = raw.unwrap_or_default();
    let queue = QueueSettings {
        backup_interval: raw.backup_interval.unwrap_or(HumanDuration::secs(600)),
        backups_kept: raw.backups_kept.unwrap_or(5),
    };
    if queue.backup_interval.0 < std::time::Duration::from_secs(1) {
        return Err(ctx.err(
            &["queue", "backup_interval"],
            "must be at least 1s (a backup copies the whole queue.db)",
        ));
    }
    if queue.backups_kept == 0 {
        return Err(ctx.err(
            &["queue", "backups_kept"],
            "must be at least 1: the newest backup is what `steward queue restore` brings back",
        ));
    }
    Ok(queue)
}
