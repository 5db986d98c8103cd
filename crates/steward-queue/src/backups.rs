//! Backups of an SQLite queue file, and restores. A damaged queue is never recreated:
//! steward refuses, names the newest good backup, and `steward queue restore` puts it back
//! (keeping the damaged file).

use crate::QueueError;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize)]
pub struct Backup {
    pub path: PathBuf,
    pub bytes: u64,
    /// Whether the file passes `PRAGMA quick_check`.
    pub healthy: bool,
    pub jobs: Option<i64>,
}

fn backups_dir(db: &Path) -> PathBuf {
    db.parent().unwrap_or(Path::new(".")).join("backups")
}

/// Backups of `db`, newest first.
pub fn list_backups(db: &Path) -> Vec<Backup> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(backups_dir(db))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "db"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.reverse();
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
            let probe = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .ok();
            let healthy = probe
                .as_ref()
                .and_then(|c| {
                    c.query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0))
                        .ok()
                })
                .is_some_and(|s| s == "ok");
            let jobs = probe.and_then(|c| {
                c.query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get(0))
                    .ok()
            });
            Backup {
                path,
                bytes,
                healthy,
                jobs,
            }
        })
        .collect()
}

pub(crate) fn damaged(db: &Path, detail: String) -> QueueError {
    let hint = match list_backups(db).into_iter().find(|b| b.healthy) {
        Some(b) => format!(
            "The newest good backup is {} ({} jobs); restore it with `steward queue restore`",
            b.path.display(),
            b.jobs.unwrap_or(0)
        ),
        None => format!(
            "There is no good backup in {}; move the file aside to start an empty queue",
            backups_dir(db).display()
        ),
    };
    QueueError::Damaged {
        path: db.to_path_buf(),
        detail,
        hint,
    }
}

/// Writes a backup of `db` into `backups/queue-<time>.db` with `write` (given the file to
/// write) and keeps the newest `keep`.
pub(crate) fn rotate_into(
    db: &Path,
    keep: usize,
    write: impl FnOnce(&Path) -> Result<(), QueueError>,
) -> Result<PathBuf, QueueError> {
    let dir = backups_dir(db);
    std::fs::create_dir_all(&dir).map_err(|source| QueueError::Io {
        what: "cannot create",
        path: dir.clone(),
        source,
    })?;
    let stamp = humantime::format_rfc3339_millis(std::time::SystemTime::now())
        .to_string()
        .replace(':', "-");
    let dest = dir.join(format!("queue-{stamp}.db"));
    // Written under another name and renamed: a crash mid-copy never leaves a torn
    // `queue-*.db` for `restore` to pick. The oldest are pruned before the rename, so no
    // more than `keep` backups are ever there at once.
    let partial = dir.join(format!("queue-{stamp}.db.partial"));
    if let Err(e) = write(&partial) {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    for old in list_backups(db).into_iter().skip(keep.max(1) - 1) {
        let _ = std::fs::remove_file(old.path);
    }
    std::fs::rename(&partial, &dest).map_err(|source| QueueError::Io {
        what: "cannot rename",
        path: partial.clone(),
        source,
    })?;
    Ok(dest)
}

/// Puts `backup` (default: the newest healthy one) in place of `db`. The current file,
/// damaged or not, is kept beside it as `queue.db.replaced-<time>`.
pub fn restore(db: &Path, backup: Option<&Path>) -> Result<PathBuf, QueueError> {
    let chosen = match backup {
        Some(p) => p.to_path_buf(),
        None => list_backups(db)
            .into_iter()
            .find(|b| b.healthy)
            .map(|b| b.path)
            .ok_or_else(|| {
                QueueError::Invalid(format!("no good backup in {}", backups_dir(db).display()))
            })?,
    };
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "-");
    if db.exists() {
        let aside = db.with_extension(format!("db.replaced-{stamp}"));
        std::fs::rename(db, &aside).map_err(|source| QueueError::Io {
            what: "cannot move aside",
            path: db.to_path_buf(),
            source,
        })?;
    }
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", db.display()));
        let _ = std::fs::remove_file(side);
    }
    std::fs::copy(&chosen, db).map_err(|source| QueueError::Io {
        what: "cannot copy the backup",
        path: chosen.clone(),
        source,
    })?;
    Ok(chosen)
}
