//! Which job store a config's queue lives in. The embedded SQLite `queue.db` in the state
//! dir is the one there is today; everything past this point sees only the `JobStore`.

use anyhow::{Context, Result};
use std::sync::Arc;
use steward_config::StateDir;
use steward_queue::{JobStore, SqliteStore};

/// How a command means to use the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The agent and the commands that add or change jobs: the queue is created if new.
    Create,
    /// Commands that only read (or change what is there): a missing queue is an error, so a
    /// mistyped `--state-dir` does not answer with an empty queue.
    Existing,
}

pub fn open(state_dir: &StateDir, access: Access) -> Result<Arc<dyn JobStore>> {
    let db = state_dir.queue_db();
    let store = match access {
        Access::Create => {
            std::fs::create_dir_all(state_dir.path())
                .with_context(|| format!("cannot create the state dir {state_dir}"))?;
            SqliteStore::open(&db)?
        }
        Access::Existing => SqliteStore::open_existing(&db)?,
    };
    Ok(Arc::new(store))
}
