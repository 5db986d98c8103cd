//! `steward up`: the agent. It owns the state dir (lock, socket), supervises every service,
//! answers the control API, and on SIGTERM/SIGINT (or `steward down`) stops everything
//! before it exits. As PID 1 in a container it also forwards signals and reaps orphans.

mod control;
mod detach;
mod gateway;
mod logging;
mod preflight;

pub use detach::run_detached;
pub use gateway::run_gateway_only;
pub use preflight::preflight;

use anyhow::{Context, Result};
use control::{handle, AgentBasics};
use logging::init_logging;
use nix::sys::signal::Signal;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use steward_api::{Request, Response, StateDirLock};
use steward_config::{Config, StateDir};
use steward_events::{EventKind, EventLog};
use steward_supervise::{CgroupDriver, Reaper, Supervisor, SupervisorContext};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// A stable id per state dir: it names this agent's cgroups, so that a new agent finds
/// and kills what a crashed one left behind, and two agents never share groups.
fn agent_id(state_dir: &StateDir) -> String {
    // FNV-1a: tiny, stable across Rust versions (unlike `DefaultHasher`).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in state_dir.path().as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:012x}", hash & 0xffff_ffff_ffff)
}

pub fn run_foreground(
    config: Config,
    sysroot: Option<&Path>,
    force: bool,
    until: Until,
) -> Result<Outcome> {
    std::fs::create_dir_all(config.state_dir.path())
        .with_context(|| format!("cannot create the state dir {}", config.state_dir))?;
    // The lock comes first: a second agent must not touch the socket, cgroups or logs.
    let lock = StateDirLock::acquire(&config.state_dir)?;
    let instances = preflight(&config, sysroot, force)?;
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(agent_main(config, instances, until));
    drop(lock);
    result
}

/// How long the agent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Until SIGTERM, SIGINT or `steward down` (`steward up`).
    Stopped,
    /// Until every pipeline's queue is drained (`steward run --until-empty`).
    Drained,
}

/// What a drained run leaves: the per-pipeline summaries.
pub type Outcome = Vec<steward_pipelines::RunSummary>;

/// Opens the config's queue when it has pipelines.
fn pipelines_store(config: &Config) -> Result<Option<Arc<dyn steward_queue::JobStore>>> {
    if config.pipelines.is_empty() {
        return Ok(None);
    }
    crate::store::open(&config.state_dir, crate::store::Access::Create).map(Some)
}

async fn agent_main(
    config: Config,
    instances: Vec<steward_plan::Instance>,
    until: Until,
) -> Result<Outcome> {
    let started = Instant::now();
    let state_dir = config.state_dir.clone();
    let events = Arc::new(EventLog::open(&state_dir.events())?);
    let id = agent_id(&state_dir);
    let cgroups = Arc::new(CgroupDriver::detect(&id));
    let reaper = Reaper::start().context("cannot become the child subreaper")?;
    let ctx = Arc::new(SupervisorContext::new(
        reaper,
        cgroups.clone(),
        events,
        state_dir.logs(),
        id,
    ));

    let leftovers = cgroups.kill_leftovers();
    if !leftovers.is_empty() {
        ctx.emit(
            None,
            EventKind::LeftoversKilled {
                pids: leftovers.iter().map(|&p| p as u32).collect(),
            },
        );
    }
    ctx.emit(
        None,
        EventKind::AgentStarted {
            pid: std::process::id(),
            config: config.path.display().to_string(),
            cgroups: cgroups.describe(),
        },
    );
    if let CgroupDriver::None { reason } = cgroups.as_ref() {
        if config
            .workloads()
            .any(|s| s.memory.is_some() || s.pids_max.is_some())
        {
            ctx.emit(None, EventKind::Limits {
                enforcement: steward_events::Enforcement::Soft,
                note: format!("memory limits are soft (RSS polled every 500 ms) and pids_max is not enforced: {reason}"),
            });
        }
    }
    set_own_oom_score_adj();

    let mut instances = instances;
    let lease_listener = steward_pipelines::lease_listener(&config, &mut instances).await?;
    let store = pipelines_store(&config)?;
    let supervisor = Supervisor::new(ctx.clone(), &config, instances.clone())?;
    let listener = steward_api::bind_socket(&state_dir)?;
    let (req_tx, mut req_rx) = mpsc::channel(64);
    let server = tokio::spawn(steward_api::serve(listener, req_tx));

    supervisor.start_all();
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let gateway =
        gateway::start_gateway(&config, Some(supervisor.clone()), shutdown_rx.clone()).await?;
    let mut pipelines = match store {
        None => None,
        Some(store) => Some(
            steward_pipelines::Pipelines::start(steward_pipelines::Start {
                config: &config,
                ctx: &ctx,
                supervisor: &supervisor,
                instances: &instances,
                store,
                lease_listener,
                until_empty: until == Until::Drained,
                shutdown: shutdown_rx.clone(),
            })
            .await?,
        ),
    };
    let mut drained = match pipelines.as_mut() {
        Some(p) => p.drained(),
        None => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = tx.send(());
            rx
        }
    };
    let bar = match (&pipelines, until) {
        (Some(p), Until::Drained) => crate::progress_bar::start(p.runners().to_vec(), shutdown_rx),
        _ => None,
    };

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let info = AgentBasics {
        config: config.path.clone(),
        state_dir: state_dir.clone(),
        started,
    };
    let mut down_replies = Vec::new();
    loop {
        tokio::select! {
            _ = &mut drained, if until == Until::Drained => { tracing::info!("every queue is drained: stopping"); break; }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping every service"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping every service"); break; }
            _ = sighup.recv() => {
                tracing::info!("SIGHUP: forwarding it to every service");
                supervisor.signal_all(Signal::SIGHUP).await;
            }
            Some((req, reply)) = req_rx.recv() => {
                if req == Request::Down {
                    down_replies.push(reply);
                    break;
                }
                let sup = supervisor.clone();
                let info = info.clone();
                tokio::spawn(async move {
                    let _ = reply.send(handle(&sup, &info, req).await);
                });
            }
        }
    }

    let _ = shutdown_tx.send(true);
    if let Some(g) = gateway {
        let _ = g.await;
    }
    if let Some(bar) = bar {
        let _ = bar.await;
    }
    let outcome = match pipelines {
        Some(p) => p.finish().await,
        None => Vec::new(),
    };
    supervisor.stop_all().await;
    cgroups.cleanup();
    ctx.emit(None, EventKind::AgentStopped);
    let _ = std::fs::remove_file(state_dir.socket());
    for reply in down_replies {
        let _ = reply.send(Response::ok());
    }
    // Closing the request channel ends the server, which first writes the replies above.
    drop(req_rx);
    let _ = server.await;
    Ok(outcome)
}

/// The agent should outlive its services when memory runs out, so that it can report the
/// OOM and restart them. Lowering the score needs CAP_SYS_RESOURCE; without it, nothing
/// changes.
fn set_own_oom_score_adj() {
    let _ = std::fs::write("/proc/self/oom_score_adj", "-500");
}
