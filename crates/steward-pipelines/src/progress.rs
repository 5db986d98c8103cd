//! `progress.json`: a snapshot every few seconds of where each pipeline stands, so
//! "is it still moving?" has an answer without a database query.

use serde::Serialize;
use steward_config::StateDir;
use steward_queue::{Job, Stats};

#[derive(Debug, Clone, Serialize)]
pub struct PipelineProgress {
    pub pipeline: String,
    pub queue: String,
    pub stats: Stats,
    /// Jobs running longer than the pipeline's stall window.
    pub stuck: Vec<Job>,
    /// Seconds since a job last completed.
    pub idle_seconds: Option<u64>,
}

/// Writes the snapshot atomically (a temp file, then rename).
pub fn write_progress(state_dir: &StateDir, pipelines: &[PipelineProgress]) -> std::io::Result<()> {
    let doc = serde_json::json!({
        "ts": steward_events::now_rfc3339(),
        "pipelines": pipelines,
    });
    let path = state_dir.progress();
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}
