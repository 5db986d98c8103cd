//! Which job store a command or the agent uses: the config's `[queue] url` (PostgreSQL,
//! shared by many nodes), else the embedded SQLite `queue.db` of the state dir. Everything
//! past this point sees only the `JobStore`.

use crate::cli::Target;
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;
use steward_config::{Config, OnUnreachable, QueueUrl, StateDir};
use steward_queue::{JobStore, PgOpen, PgStore, QueueError, SqliteStore};

/// How a command means to use the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The agent and the commands that add or change jobs: the queue is created if new.
    Create,
    /// Commands that only read (or change what is there): a missing queue is an error, so a
    /// mistyped `--state-dir` does not answer with an empty queue.
    Existing,
}

/// Where a queue is.
#[derive(Debug, Clone)]
pub enum Location {
    Sqlite(StateDir),
    Postgres { url: QueueUrl, notify: bool },
}

impl Location {
    pub fn of_config(config: &Config) -> Location {
        match &config.queue.url {
            Some(url) => Location::Postgres {
                url: url.clone(),
                notify: config.queue.notify,
            },
            None => Location::Sqlite(config.state_dir.clone()),
        }
    }

    /// `--state-dir DIR`: that dir's SQLite queue; else the config's queue.
    pub fn of_target(target: &Target) -> Result<Location> {
        if let Some(dir) = &target.state_dir {
            return Ok(Location::Sqlite(StateDir::new(dir)));
        }
        let config = steward_config::load(&target.file())
            .with_context(|| "cannot tell which queue to use".to_string())?;
        Ok(Location::of_config(&config))
    }
}

pub async fn open(location: &Location, access: Access) -> Result<Arc<dyn JobStore>> {
    match location {
        Location::Sqlite(state_dir) => {
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
        Location::Postgres { url, notify } => {
            let how = match access {
                Access::Create => PgOpen::Create,
                Access::Existing => PgOpen::Existing,
            };
            Ok(Arc::new(
                PgStore::open(url.expose(), &url.masked(), *notify, how).await?,
            ))
        }
    }
}

/// The agent's queue, when it has pipelines or a shared queue. An unreachable database is
/// said once and tried again with backoff until `shutdown` (services need no queue and
/// run meanwhile), unless the config says `on_unreachable = "exit"`. `None` after shutdown.
pub async fn open_for_agent(
    config: &Config,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<Arc<dyn JobStore>>> {
    if config.pipelines.is_empty() && config.queue.url.is_none() {
        return Ok(None);
    }
    let location = Location::of_config(config);
    let mut delay = Duration::from_secs(1);
    let mut said = false;
    loop {
        match open(&location, Access::Create).await {
            Ok(store) => {
                if said {
                    tracing::info!("the queue answers again: starting the pipelines");
                }
                return Ok(Some(store));
            }
            Err(e) if unreachable(&e) && config.queue.on_unreachable == OnUnreachable::Retry => {
                if !said {
                    tracing::warn!(
                        "{e:#}; the services run, and the pipelines start once it answers (trying again, at least every 30 s; set [queue] on_unreachable = \"exit\" to stop instead)"
                    );
                    said = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = steward_net::stopped(&mut shutdown) => return Ok(None),
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(e) if unreachable(&e) => {
                return Err(
                    e.context("the queue cannot be reached and [queue] on_unreachable = \"exit\"")
                )
            }
            Err(e) => return Err(e),
        }
    }
}

/// A database that did not answer, as opposed to one that answered no.
pub fn unreachable(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<QueueError>(),
        Some(QueueError::Database(msg)) if msg.starts_with("cannot reach")
    )
}
