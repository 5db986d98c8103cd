//! This agent as one node of the queue's fleet: it joins (refused while another live agent
//! has its name), beats its heartbeat with what it runs, and, while it leads, rescues the
//! leases of dead nodes and prunes finished jobs. It leaves once its slots are done.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use steward_config::Node;
use steward_events::EventKind;
use steward_queue::{JobStore, NodeInfo, QueueError};
use steward_supervise::{Supervisor, SupervisorContext};
use tokio::sync::watch;

/// Finished jobs deleted per statement while pruning.
const PRUNE_BATCH: usize = 5_000;
/// Most prune statements per heartbeat, so a large backlog is worked off over time.
const PRUNE_ROUNDS: usize = 20;
/// While the queue cannot be reached: how often that is said again.
const SAY_AGAIN: Duration = Duration::from_secs(30);

pub struct Fleet {
    store: Arc<dyn JobStore>,
    ctx: Arc<SupervisorContext>,
    settings: Node,
    keep_finished: Duration,
    info: Mutex<NodeInfo>,
}

impl Fleet {
    /// Joins the fleet as a new run of `info.name` (a fresh run id), then takes back what
    /// no live run holds: at least the leases of this node's earlier run.
    pub async fn join(
        store: Arc<dyn JobStore>,
        ctx: Arc<SupervisorContext>,
        mut info: NodeInfo,
        settings: &Node,
        keep_finished: Duration,
    ) -> Result<Arc<Fleet>, QueueError> {
        info.run = format!("{:08x}", fastrand::u32(..));
        store.join(&info, settings.ttl.0).await?;
        let fleet = Arc::new(Fleet {
            store,
            ctx,
            settings: settings.clone(),
            keep_finished,
            info: Mutex::new(info),
        });
        fleet.rescue().await?;
        Ok(fleet)
    }

    pub fn info(&self) -> NodeInfo {
        self.info.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `<node>/<run>/`: the start of every lease owner of this run.
    pub fn owner_prefix(&self) -> String {
        self.info().owner_prefix()
    }

    async fn rescue(&self) -> Result<(), QueueError> {
        let rescued = self
            .store
            .rescue(self.settings.ttl.0, &steward_config::Backoff::default())
            .await?;
        if !rescued.is_empty() {
            tracing::info!(
                "took back {} job(s) whose node is gone or whose lease expired",
                rescued.len()
            );
            self.ctx.emit(
                None,
                EventKind::JobsRescued {
                    jobs: rescued.iter().map(|r| r.0).collect(),
                },
            );
        }
        Ok(())
    }

    /// The leader's upkeep: rescue, then prune in batches.
    async fn lead(&self) -> Result<(), QueueError> {
        self.rescue().await?;
        for _ in 0..PRUNE_ROUNDS {
            if self.store.prune(self.keep_finished, PRUNE_BATCH).await? < PRUNE_BATCH as u64 {
                break;
            }
        }
        Ok(())
    }

    async fn tick(&self, supervisor: Option<&Supervisor>) -> Result<(), QueueError> {
        let info = {
            let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = supervisor {
                let all = s.status();
                info.services_total = all.len() as u32;
                info.services_up = all
                    .iter()
                    .filter(|st| st.state == steward_api::ServiceState::Running)
                    .count() as u32;
            }
            info.clone()
        };
        if !self.store.beat(&info).await? {
            // Thought dead (a pause past the TTL) and taken over, or marked stopped: join
            // again if the name is free, else say who has it.
            tracing::warn!(
                "node {}: this run's registration is gone (it was silent past {}); joining again",
                info.name,
                self.settings.ttl
            );
            self.store.join(&info, self.settings.ttl.0).await?;
        }
        if self.store.lead(&info, self.settings.ttl.0).await? {
            self.lead().await?;
        }
        Ok(())
    }

    /// Beats every `heartbeat` until shutdown; errors (the database restarting) are said
    /// once per burst and retried at the next beat.
    pub async fn run(
        self: Arc<Self>,
        supervisor: Option<Arc<Supervisor>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut failing: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.settings.heartbeat.0) => {}
                _ = steward_net::stopped(&mut shutdown) => return,
            }
            match self.tick(supervisor.as_deref()).await {
                Ok(()) => {
                    if failing.take().is_some() {
                        tracing::info!("node {}: the queue answers again", self.info().name);
                    }
                }
                Err(QueueError::NodeTaken(t)) => {
                    tracing::error!("{t}");
                }
                Err(e) => {
                    let now = Instant::now();
                    if failing.is_none_or(|since| now.duration_since(since) >= SAY_AGAIN) {
                        failing = Some(now);
                        tracing::warn!("node {}: cannot beat its heartbeat: {e}", self.info().name);
                    }
                }
            }
        }
    }

    /// Marks this run stopped, once nothing it leased is still running.
    pub async fn leave(&self) {
        if let Err(e) = self.store.leave(&self.info()).await {
            tracing::warn!("node {}: cannot record that it left: {e}", self.info().name);
        }
    }
}
