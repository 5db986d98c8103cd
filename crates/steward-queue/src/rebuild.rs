//! `queue rebuild-done`: reconciles a queue with the outputs its jobs should have made, so
//! a done-set never has to be rebuilt by hand. Jobs whose output exists become succeeded;
//! succeeded jobs whose output is missing are reported, and requeued on request.

use crate::job::{JobFilter, JobState, Selection};
use crate::{JobStore, QueueError};
use std::path::{Path, PathBuf};
use steward_config::template;

/// What a rebuild changed and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Jobs marked succeeded because their output exists.
    pub marked: u64,
    /// Succeeded jobs whose output is missing or empty: (job, the output it should have).
    pub missing: Vec<(i64, PathBuf)>,
    /// Of those, how many went back to pending.
    pub requeued: u64,
}

/// Checks every job of `queue` for its output, named by `pattern` (a template over
/// `{stem}`, `{name}`, `{input}`, …) under `outputs`.
pub async fn rebuild_done(
    store: &dyn JobStore,
    queue: &str,
    outputs: &Path,
    pattern: &str,
    requeue_missing: bool,
) -> Result<Rebuilt, QueueError> {
    template::check(pattern).map_err(QueueError::Invalid)?;
    let jobs = store.list(&JobFilter::queue(queue)).await?;
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for j in &jobs {
        let Some(input) = j.input_path() else {
            continue;
        };
        let vars = template::vars_for(&input, outputs, j.id, j.attempts);
        let out = outputs.join(template::render(pattern, &vars).map_err(QueueError::Invalid)?);
        let present = std::fs::metadata(&out).is_ok_and(|m| m.len() > 0);
        match (j.state, present) {
            (JobState::Succeeded, false) => missing.push((j.id, out)),
            (JobState::Succeeded | JobState::Cancelled | JobState::Running, _) => {}
            (_, true) => found.push(j.id),
            _ => {}
        }
    }
    let marked = store.mark_succeeded(found).await?;
    let requeued = if requeue_missing && !missing.is_empty() {
        let ids = missing.iter().map(|m| m.0).collect();
        store.retry(Selection::Ids(ids)).await?
    } else {
        0
    };
    Ok(Rebuilt {
        marked,
        missing,
        requeued,
    })
}
