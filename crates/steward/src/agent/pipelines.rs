//! Starting the agent's pipelines: at once when the queue opens, or, when a shared queue
//! cannot be reached at start, later, once it answers (the services run meanwhile).

use crate::store::{self, Location};
use anyhow::Result;
use std::sync::Arc;
use steward_config::{Config, OnUnreachable};
use steward_pipelines::{LeaseEndpoint, Pipelines};
use steward_queue::JobStore;
use steward_supervise::{Supervisor, SupervisorContext};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The queue as the agent found it at start.
pub enum StoreStart {
    /// Opened (or not needed: `None`).
    Ready(Option<Arc<dyn JobStore>>),
    /// A shared queue that did not answer: the pipelines start once it does.
    Later,
}

/// Opens the queue before anything is made, so a damaged or refused queue stops `up` at
/// once. Only an unreachable shared queue is left for later (unless the config says exit).
pub async fn open_at_start(config: &Config) -> Result<StoreStart> {
    if config.pipelines.is_empty() && config.queue.url.is_none() {
        return Ok(StoreStart::Ready(None));
    }
    match store::open(&Location::of_config(config), store::Access::Create).await {
        Ok(s) => Ok(StoreStart::Ready(Some(s))),
        Err(e) if store::unreachable(&e) => match config.queue.on_unreachable {
            OnUnreachable::Retry => Ok(StoreStart::Later),
            OnUnreachable::Exit => {
                Err(e.context("the queue cannot be reached and [queue] on_unreachable = \"exit\""))
            }
        },
        Err(e) => Err(e),
    }
}

/// What the pipelines need from the agent, owned, for a start that happens later.
pub struct Owned {
    pub config: Arc<Config>,
    pub ctx: Arc<SupervisorContext>,
    pub supervisor: Arc<Supervisor>,
    pub instances: Arc<[Arc<steward_plan::Instance>]>,
    pub until_empty: bool,
    /// Given the queue once it is open, for the HTTP face.
    pub opened: Arc<std::sync::OnceLock<Arc<dyn JobStore>>>,
}

pub async fn start(
    o: &Owned,
    store: Option<Arc<dyn JobStore>>,
    lease_listener: Option<LeaseEndpoint>,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<Pipelines>> {
    let Some(store) = store else {
        return Ok(None);
    };
    let _ = o.opened.set(store.clone());
    let start = steward_pipelines::Start {
        config: &o.config,
        ctx: &o.ctx,
        supervisor: &o.supervisor,
        instances: &o.instances,
        store,
        node: super::node_info::node_info(&o.config, &o.instances),
        lease_listener,
        until_empty: o.until_empty,
        shutdown,
    };
    Ok(Some(Pipelines::start(start).await?))
}

/// Waits for the queue (retrying with backoff), then starts the pipelines; `None` when
/// the agent stops first.
pub fn start_later(
    o: Owned,
    lease_listener: Option<LeaseEndpoint>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<Result<Option<Pipelines>>> {
    tokio::spawn(async move {
        let Some(store) = store::open_for_agent(&o.config, shutdown.clone()).await? else {
            return Ok(None);
        };
        start(&o, Some(store), lease_listener, shutdown).await
    })
}
