//! Every pipeline of one agent, and what runs beside them: the queue's leases of an agent
//! that died taken back, each pipeline's inputs enqueued, its runner started, the lease
//! API for lease-mode workers, `progress.json` kept current, and the queue backed up.
//! Everything stops on the agent's shutdown signal and is awaited, never aborted.

use crate::fleet::Fleet;
use crate::lease::{self, LeaseBroker};
use crate::progress::write_progress;
use crate::runner::{PipelineRunner, RunSummary};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use steward_config::{Config, PipelineMode, QueueSettings, StateDir};
use steward_plan::Instance;
use steward_queue::{JobStore, NodeInfo, QueueError};
use steward_supervise::{Supervisor, SupervisorContext};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// How often `progress.json` is written.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum PipelinesError {
    #[error("cannot join the queue's fleet: {0}")]
    Join(#[source] QueueError),
    #[error("{pipeline}: cannot enqueue its inputs: {source}")]
    Inputs {
        pipeline: String,
        #[source]
        source: QueueError,
    },
    #[error("cannot open a port for the lease API: {0}")]
    LeaseListener(#[source] std::io::Error),
}

/// Where lease-mode workers reach the lease API, and the secret each replica shows it.
pub struct LeaseEndpoint {
    pub listener: tokio::net::TcpListener,
    /// Token -> the replica it was given to.
    pub tokens: BTreeMap<String, String>,
}

/// For lease-mode pipelines: a port on 127.0.0.1 for the lease API, and `STEWARD_URL`,
/// `STEWARD_QUEUE`, `STEWARD_PIPELINE` and `STEWARD_TOKEN` (a secret of its own, which the
/// API requires) in each worker replica's environment.
pub async fn lease_listener(
    config: &Config,
    instances: &mut [Instance],
) -> Result<Option<LeaseEndpoint>, PipelinesError> {
    let lease: Vec<&steward_config::Pipeline> = config
        .pipelines
        .values()
        .filter(|p| p.mode == PipelineMode::Lease)
        .collect();
    if lease.is_empty() {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(PipelinesError::LeaseListener)?;
    let addr = listener
        .local_addr()
        .map_err(PipelinesError::LeaseListener)?;
    let url = format!("http://{addr}");
    let mut tokens = BTreeMap::new();
    for inst in instances.iter_mut() {
        if let Some(p) = lease.iter().find(|p| p.name == inst.service) {
            let token = secret().map_err(PipelinesError::LeaseListener)?;
            inst.env.insert("STEWARD_URL".into(), url.clone());
            inst.env.insert("STEWARD_QUEUE".into(), p.queue.clone());
            inst.env.insert("STEWARD_PIPELINE".into(), p.name.clone());
            inst.env.insert("STEWARD_TOKEN".into(), token.clone());
            tokens.insert(token, inst.name.clone());
        }
    }
    tracing::info!("lease API on {url}");
    Ok(Some(LeaseEndpoint { listener, tokens }))
}

/// 128 random bits from the kernel, as hex.
fn secret() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What [`Pipelines::start`] needs from the agent.
pub struct Start<'a> {
    pub config: &'a Config,
    pub ctx: &'a Arc<SupervisorContext>,
    pub supervisor: &'a Arc<Supervisor>,
    pub instances: &'a [std::sync::Arc<Instance>],
    pub store: Arc<dyn JobStore>,
    /// This node as the fleet will see it (its run id is given at join).
    pub node: NodeInfo,
    pub lease_listener: Option<LeaseEndpoint>,
    /// Stop once every queue is drained (`steward run --until-empty`).
    pub until_empty: bool,
    pub shutdown: watch::Receiver<bool>,
}

pub struct Pipelines {
    runners: Vec<Arc<PipelineRunner>>,
    joined: JoinHandle<()>,
    drained: Option<oneshot::Receiver<()>>,
    background: Vec<JoinHandle<()>>,
    state_dir: StateDir,
    fleet: Option<Arc<Fleet>>,
}

impl Pipelines {
    pub async fn start(s: Start<'_>) -> Result<Pipelines, PipelinesError> {
        let (done_tx, done_rx) = oneshot::channel();
        let state_dir = s.config.state_dir.clone();
        // Every agent with a queue is a node of its fleet, pipelines or not.
        let fleet = Fleet::join(
            s.store.clone(),
            s.ctx.clone(),
            s.node.clone(),
            &s.config.node,
            s.config.queue.keep_finished.0,
        )
        .await
        .map_err(PipelinesError::Join)?;
        let fleet_loop = tokio::spawn(
            fleet
                .clone()
                .run(Some(s.supervisor.clone()), s.shutdown.clone()),
        );
        if s.config.pipelines.is_empty() {
            let _ = done_tx.send(());
            return Ok(Pipelines {
                runners: Vec::new(),
                joined: tokio::spawn(async {}),
                drained: Some(done_rx),
                background: vec![fleet_loop],
                state_dir,
                fleet: Some(fleet),
            });
        }
        let run_id = fleet.owner_prefix();
        let mut runners = Vec::new();
        let mut tasks = Vec::new();
        for p in s.config.pipelines.values() {
            let mine: Vec<Instance> = s
                .instances
                .iter()
                .filter(|i| i.service == p.name)
                .map(|i| Instance::clone(i))
                .collect();
            let runner = PipelineRunner::new(
                s.ctx.clone(),
                s.store.clone(),
                p.clone(),
                mine,
                run_id.clone(),
                Some(s.supervisor.clone()),
            );
            let enqueued =
                runner
                    .enqueue_inputs()
                    .await
                    .map_err(|source| PipelinesError::Inputs {
                        pipeline: p.name.clone(),
                        source,
                    })?;
            if let Some(sum) = enqueued {
                tracing::info!("{}: inputs: {sum}", p.name);
            }
            tasks.push(tokio::spawn(
                runner.clone().run(s.until_empty, s.shutdown.clone()),
            ));
            runners.push(runner);
        }
        let mut background = Vec::new();
        if let Some(endpoint) = s.lease_listener {
            let lease_runners: Vec<_> = runners
                .iter()
                .filter(|r| r.pipeline().mode == PipelineMode::Lease)
                .cloned()
                .collect();
            let broker = LeaseBroker::new(
                s.store.clone(),
                s.supervisor.clone(),
                lease_runners,
                run_id,
                endpoint.tokens,
            );
            // Not one of the tasks whose end means "drained": it serves until shutdown.
            background.push(tokio::spawn(lease::serve(
                broker,
                endpoint.listener,
                s.shutdown.clone(),
            )));
        }
        let joined = tokio::spawn(async move {
            for t in tasks {
                let _ = t.await;
            }
            let _ = done_tx.send(());
        });
        background.push(tokio::spawn(progress_loop(
            runners.clone(),
            state_dir.clone(),
            s.shutdown.clone(),
        )));
        background.push(tokio::spawn(backup_loop(
            s.store.clone(),
            s.config.queue.clone(),
            s.shutdown.clone(),
        )));
        background.push(fleet_loop);
        Ok(Pipelines {
            runners,
            joined,
            drained: Some(done_rx),
            background,
            state_dir,
            fleet: Some(fleet),
        })
    }

    /// Resolves once every pipeline has stopped (drained, with `until_empty`).
    pub fn drained(&mut self) -> oneshot::Receiver<()> {
        self.drained.take().unwrap_or_else(|| oneshot::channel().1)
    }

    pub fn runners(&self) -> &[Arc<PipelineRunner>] {
        &self.runners
    }

    /// Once the agent's shutdown has been signalled (or the queues drained): waits for the
    /// slots to finish their current jobs and the loops beside them to stop, writes the last
    /// `progress.json`, and reports.
    pub async fn finish(self) -> Vec<RunSummary> {
        let _ = self.joined.await;
        for t in self.background {
            let _ = t.await;
        }
        // Only now: a node that left has its leases taken back by the others.
        if let Some(fleet) = &self.fleet {
            fleet.leave().await;
        }
        save_progress(&self.state_dir, &self.runners).await;
        let mut out = Vec::new();
        for r in &self.runners {
            out.push(r.summary().await);
        }
        out
    }
}

async fn save_progress(dir: &StateDir, runners: &[Arc<PipelineRunner>]) {
    let mut snapshot = Vec::new();
    for r in runners {
        snapshot.extend(r.progress().await);
    }
    let dir = dir.clone();
    let written = tokio::task::spawn_blocking(move || write_progress(&dir, &snapshot)).await;
    if let Ok(Err(e)) = written {
        tracing::warn!("cannot write progress.json: {e}");
    }
}

async fn progress_loop(
    runners: Vec<Arc<PipelineRunner>>,
    dir: StateDir,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        save_progress(&dir, &runners).await;
        tokio::select! {
            _ = tokio::time::sleep(PROGRESS_EVERY) => {}
            _ = steward_net::stopped(&mut shutdown) => return,
        }
    }
}

async fn backup_loop(
    store: Arc<dyn JobStore>,
    settings: QueueSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(settings.backup_interval.0) => {}
            _ = steward_net::stopped(&mut shutdown) => return,
        }
        match store.backup(settings.backups_kept).await {
            Ok(path) => tracing::info!("queue backup: {}", path.display()),
            Err(steward_queue::QueueError::Unsupported(_)) => return,
            Err(e) => tracing::warn!("queue backup failed: {e}"),
        }
    }
}
