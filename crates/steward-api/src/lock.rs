use crate::ApiError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use steward_config::StateDir;

/// Held by the one agent that owns a state dir, for as long as it runs. It is an `flock`,
/// so it is released by the kernel if the agent dies, and never goes stale.
pub struct StateDirLock {
    _file: File,
    path: PathBuf,
}

impl StateDirLock {
    pub fn acquire(state_dir: &StateDir) -> Result<StateDirLock, ApiError> {
        let path = state_dir.lock();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| ApiError::Io {
                what: "cannot open the lock file",
                path: path.clone(),
                source,
            })?;
        if file.try_lock().is_err() {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(ApiError::AlreadyRunning {
                pid: text.trim().parse().ok(),
                state_dir: state_dir.clone(),
            });
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(file, "{}", std::process::id());
        Ok(StateDirLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The longest path `sun_path` holds, less its NUL.
const SUN_PATH_MAX: usize = 107;

/// Binds `steward.sock` with mode 0600. Call it while holding the [`StateDirLock`]: any
/// socket file already there was left by an agent that died, and is removed.
pub fn bind_socket(state_dir: &StateDir) -> Result<tokio::net::UnixListener, ApiError> {
    let path = state_dir.socket();
    let len = path.as_os_str().len();
    if len > SUN_PATH_MAX {
        return Err(ApiError::SocketPathTooLong {
            path,
            len,
            max: SUN_PATH_MAX,
        });
    }
    if path.exists() {
        tracing::info!(
            "removing a stale socket {} left by an agent that did not stop cleanly",
            path.display()
        );
        std::fs::remove_file(&path).map_err(|source| ApiError::Io {
            what: "cannot remove the stale socket",
            path: path.clone(),
            source,
        })?;
    }
    let listener = tokio::net::UnixListener::bind(&path).map_err(|source| ApiError::Io {
        what: "cannot listen on",
        path: path.clone(),
        source,
    })?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        ApiError::Io {
            what: "cannot restrict the permissions of",
            path,
            source,
        }
    })?;
    Ok(listener)
}
