//! Turning paths into jobs: walk directories, filter by glob, key each file (the blake3 of
//! its content by default, so the same file enqueued twice, or renamed, is one job).

use crate::QueueError;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKey {
    /// blake3 of the content: a renamed file is still done.
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
                root.display()
            )));
        }
        for entry in walkdir::WalkDir::new(root)
            .follow_links(false)
            .sort_by_file_name()
        {
            match entry {
                Err(e) => skipped.push(e.to_string()),
                Ok(e) if e.file_type().is_file() => {
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
        InputKey::Path => Ok(format!("path:{}", path.display())),
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
            Ok(format!("blake3:{}", hasher.finalize().to_hex()))
        }
    }
}
