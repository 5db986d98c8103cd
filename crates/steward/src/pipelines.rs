//! The agent's side of pipelines: open the queue, take back the leases of an agent that
//! died, enqueue each pipeline's inputs, run its slots, and keep `progress.json` and the
//! backups current.

use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;
use steward_config::Config;
use steward_events::EventKind;
use steward_pipelines::{PipelineRunner, RunSummary};
use steward_plan::Instance;
use steward_queue::JobStore;
use steward_supervise::SupervisorContext;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const PROGRESS_EVERY: Duration = Duration::from_secs(5);

pub struct Running {
    runners: Vec<Arc<PipelineRunner>>,
    joined: JoinHandle<()>,
    done: Option<oneshot::Receiver<()>>,
    background: Vec<JoinHandle<()>>,
    bar: Option<indicatif::ProgressBar>,
    state_dir: std::path::PathBuf,
}

/// For lease-mode pipelines: a port on 127.0.0.1 for the lease API, and `STEWARD_URL`,
/// `STEWARD_QUEUE` and `STEWARD_PIPELINE` in their workers' environment.
pub async fn lease_listener(
    config: &Config,
    instances: &mut [Instance],
) -> Result<Option<tokio::net::TcpListener>> {
    let lease: Vec<&steward_config::Pipeline> = config
        .pipelines
        .values()
        .filter(|p| p.mode == steward_config::PipelineMode::Lease)
        .collect();
    if lease.is_empty() {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot open a port for the lease API")?;
    let url = format!("http://{}", listener.local_addr()?);
    for inst in instances.iter_mut() {
        if let Some(p) = lease.iter().find(|p| p.name == inst.service) {
            inst.env.insert("STEWARD_URL".into(), url.clone());
            inst.env.insert("STEWARD_QUEUE".into(), p.queue.clone());
            inst.env.insert("STEWARD_PIPELINE".into(), p.name.clone());
        }
    }
    tracing::info!("lease API on {url}");
    Ok(Some(listener))
}

pub fn start(
    config: &Config,
    ctx: &Arc<SupervisorContext>,
    supervisor: &Arc<steward_supervise::Supervisor>,
    instances: &[Instance],
    lease_listener: Option<tokio::net::TcpListener>,
    until_empty: bool,
    shutdown: watch::Receiver<bool>,
) -> Result<Running> {
    let (done_tx, done_rx) = oneshot::channel();
    if config.pipelines.is_empty() {
        let _ = done_tx.send(());
        return Ok(Running {
            runners: Vec::new(),
            joined: tokio::spawn(async {}),
            done: Some(done_rx),
            background: Vec::new(),
            bar: None,
            state_dir: config.state_dir.clone(),
        });
    }
    let store = Arc::new(crate::queue_cmd::open(&config.state_dir)?);
    let run_id = format!("{:08x}/", fastrand::u32(..));
    let rescued = store
        .rescue(Some(&run_id), &steward_config::Backoff::default())
        .context("cannot take back the leases of the agent before this one")?;
    if !rescued.is_empty() {
        ctx.emit(
            None,
            EventKind::JobsRescued {
                jobs: rescued.iter().map(|r| r.0).collect(),
            },
        );
    }
    let mut runners = Vec::new();
    let mut tasks = Vec::new();
    for p in config.pipelines.values() {
        let mine: Vec<Instance> = instances
            .iter()
            .filter(|i| i.service == p.name)
            .cloned()
            .collect();
        let runner =
            PipelineRunner::new(ctx.clone(), store.clone(), p.clone(), mine, run_id.clone())
                .with_supervisor(supervisor.clone());
        if let Some(sum) = runner.enqueue_inputs()? {
            tracing::info!("{}: inputs: {sum}", p.name);
        }
        tasks.push(tokio::spawn(
            runner.clone().run(until_empty, shutdown.clone()),
        ));
        runners.push(runner);
    }
    let mut background = Vec::new();
    if let Some(listener) = lease_listener {
        let lease_runners: Vec<_> = runners
            .iter()
            .filter(|r| r.pipeline.mode == steward_config::PipelineMode::Lease)
            .cloned()
            .collect();
        let broker = steward_pipelines::LeaseBroker::new(
            store.clone(),
            supervisor.clone(),
            lease_runners,
            run_id.clone(),
        );
        // Not one of the tasks whose end means "drained": it serves until shutdown.
        background.push(tokio::spawn(broker.run(listener, shutdown.clone())));
    }
    let joined = tokio::spawn(async move {
        for t in tasks {
            let _ = t.await;
        }
        let _ = done_tx.send(());
    });

    {
        let (runners, dir) = (runners.clone(), config.state_dir.clone());
        background.push(tokio::spawn(async move {
            loop {
                write_progress(&dir, &runners);
                tokio::time::sleep(PROGRESS_EVERY).await;
            }
        }));
    }
    {
        let store = store.clone();
        let settings = config.queue;
        background.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(settings.backup_interval.0).await;
                let s = store.clone();
                match tokio::task::spawn_blocking(move || {
                    steward_queue::backup(&s, settings.backups_kept)
                })
                .await
                {
                    Ok(Ok(path)) => tracing::info!("queue backup: {}", path.display()),
                    Ok(Err(e)) => tracing::warn!("queue backup failed: {e}"),
                    Err(_) => {}
                }
            }
        }));
    }
    let bar = (until_empty && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} jobs done, {per_sec}, ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let (b2, runners) = (b.clone(), runners.clone());
        background.push(tokio::spawn(async move {
            loop {
                let (mut done, mut total, mut quarantined) = (0, 0, 0);
                for r in &runners {
                    if let Some(p) = r.progress() {
                        let c = &p.stats.counts;
                        done += c["succeeded"] + c["quarantined"] + c["cancelled"];
                        total += c.values().sum::<u64>();
                        quarantined += c["quarantined"];
                    }
                }
                b2.set_length(total);
                b2.set_position(done);
                b2.set_message(if quarantined > 0 {
                    format!("({quarantined} quarantined)")
                } else {
                    String::new()
                });
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
        b
    });
    Ok(Running {
        runners,
        joined,
        done: Some(done_rx),
        background,
        bar,
        state_dir: config.state_dir.clone(),
    })
}

fn write_progress(dir: &std::path::Path, runners: &[Arc<PipelineRunner>]) {
    let snapshot: Vec<_> = runners.iter().filter_map(|r| r.progress()).collect();
    if let Err(e) = steward_pipelines::write_progress(dir, &snapshot) {
        tracing::warn!("cannot write progress.json: {e}");
    }
}

impl Running {
    /// Resolves once every pipeline has stopped (drained, with `until_empty`).
    pub fn drained(&mut self) -> oneshot::Receiver<()> {
        self.done.take().unwrap_or_else(|| oneshot::channel().1)
    }

    /// Waits for the slots to finish their current jobs, then reports.
    pub async fn finish(self) -> Vec<RunSummary> {
        let _ = self.joined.await;
        for t in &self.background {
            t.abort();
        }
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        write_progress(&self.state_dir, &self.runners);
        self.runners.iter().map(|r| r.summary()).collect()
    }
}
