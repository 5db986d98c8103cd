//! Turning paths into jobs: walk directories, filter by glob, key each file (by default the
//! blake3 of its content with its name, so the same file enqueued twice, or moved, is one
//! job).

use crate::QueueError;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKey {
    /// blake3 of the content, with the file's name: the same file under the same name is
    /// one job wherever it lies (moved, copied again: still done), and two files with the
    /// same bytes but different names are two jobs, so each gets the output its name gives.
    Content,
    /// The absolute path.
    Path,
}

/// Files found under the given paths.
pub struct InputWalk {
    pub files: Vec<PathBuf>,
    /// Paths that could not be read, with why.
    pub skipped: Vec<String>,
}

/// Walks `paths` (files or directories, recursively), keeping files that match `glob`.
pub fn collect_inputs(paths: &[PathBuf], glob: Option<&str>) -> Result<InputWalk, QueueError> {
    let matcher = match glob {
        Some(g) => Some(
            globset::Glob::new(g)
                .map_err(|e| QueueError::Invalid(format!("--glob {g:?}: {e}")))?
                .compile_matcher(),
        ),
        None => None,
    };
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for root in paths {
        if !root.exists() {
            return Err(QueueError::Invalid(format!(
                "{} does not exist",
                steward_config::escaped_os(root.as_os_str())
            )));
        }
        for entry in walkdir::WalkDir::new(root)
            .follow_links(false)
            .sort_by_file_name()
        {
            match entry {
                Err(e) => skipped.push(e.to_string()),
                // Symlinked files are inputs too; confinement decides where they may point.
                Ok(e) if e.file_type().is_file() || (e.path_is_symlink() && e.path().is_file()) => {
                    let keep = matcher.as_ref().is_none_or(|m| m.is_match(e.file_name()));
                    if keep {
                        files.push(
                            std::path::absolute(e.path())
                                .unwrap_or_else(|_| e.path().to_path_buf()),
                        );
                    }
                }
                Ok(_) => {}
            }
        }
    }
    Ok(InputWalk { files, skipped })
}

/// The key of one input file.
pub fn key_for(path: &Path, how: InputKey) -> Result<String, QueueError> {
    match how {
        InputKey::Path => Ok(format!(
            "path:{}",
            steward_config::escaped_os(path.as_os_str())
        )),
        InputKey::Content => {
            let mut hasher = blake3::Hasher::new();
            let mut f = std::fs::File::open(path).map_err(|source| QueueError::Io {
                what: "cannot read",
                path: path.to_path_buf(),
                source,
            })?;
            std::io::copy(&mut f, &mut hasher).map_err(|source| QueueError::Io {
                what: "cannot read",
                path: path.to_path_buf(),
                source,
            })?;
            let name = path.file_name().unwrap_or_default();
            Ok(format!(
                "blake3:{}:{}",
                hasher.finalize().to_hex(),
                steward_config::escaped_os(name)
            ))
        }
    }
}

/// What `enqueue_files` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct EnqueueSummary {
    pub files: usize,
    pub inserted: usize,
    pub already_queued: usize,
    pub already_done: usize,
    pub unreadable: Vec<String>,
}

impl std::fmt::Display for EnqueueSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} enqueued, {} already queued, {} already done, {} unreadable ({} files)",
            self.inserted,
            self.already_queued,
            self.already_done,
            self.unreadable.len(),
            self.files
        )
    }
}

/// Jobs inserted per transaction.
const BATCH: usize = 5_000;

/// Which files to enqueue, and how.
#[derive(Debug, Clone)]
pub struct FileJobs<'a> {
    pub queue: &'a str,
    pub paths: &'a [PathBuf],
    pub glob: Option<&'a str>,
    pub key: InputKey,
    pub max_attempts: u32,
    pub priority: i64,
}

/// Walks the paths, keys every file (hashing on every core, off the async runtime) and
/// enqueues them in batches. `progress` is told how many files are done so far, of how many.
pub async fn enqueue_files(
    store: &dyn crate::JobStore,
    spec: &FileJobs<'_>,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<EnqueueSummary, QueueError> {
    let (queue, how, max_attempts, priority) =
        (spec.queue, spec.key, spec.max_attempts, spec.priority);
    let (paths, glob) = (spec.paths.to_vec(), spec.glob.map(str::to_string));
    let walk = tokio::task::spawn_blocking(move || collect_inputs(&paths, glob.as_deref()))
        .await
        .map_err(|e| QueueError::Invalid(format!("the walk of the inputs failed: {e}")))??;
    let mut sum = EnqueueSummary {
        files: walk.files.len(),
        unreadable: walk.skipped,
        ..Default::default()
    };
    let mut done = 0;
    for chunk in walk.files.chunks(BATCH) {
        let owned = chunk.to_vec();
        let keys = tokio::task::spawn_blocking(move || hash_parallel(&owned, how))
            .await
            .map_err(|e| QueueError::Invalid(format!("hashing the inputs failed: {e}")))?;
        let mut jobs = Vec::with_capacity(chunk.len());
        for (path, key) in chunk.iter().zip(keys) {
            match key {
                Ok(key) => jobs.push(crate::NewJob {
                    queue: queue.to_string(),
                    key,
                    payload: crate::job::file_payload(path),
                    priority,
                    max_attempts,
                    timeout_ms: None,
                }),
                Err(e) => sum.unreadable.push(e.to_string()),
            }
        }
        for outcome in store.enqueue(jobs).await? {
            match outcome {
                crate::EnqueueOutcome::Inserted { .. } => sum.inserted += 1,
                crate::EnqueueOutcome::AlreadyQueued { .. } => sum.already_queued += 1,
                crate::EnqueueOutcome::AlreadyDone { .. } => sum.already_done += 1,
            }
        }
        done += chunk.len();
        progress(done, sum.files);
    }
    Ok(sum)
}

fn hash_parallel(files: &[PathBuf], how: InputKey) -> Vec<Result<String, QueueError>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = files.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(per)
            .map(|c| s.spawn(move || c.iter().map(|f| key_for(f, how)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}
