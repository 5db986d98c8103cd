//! `steward up`: the agent. It owns the state dir (lock, socket), supervises every service,
//! answers the control API, and on SIGTERM/SIGINT (or `steward down`) stops everything
//! before it exits. As PID 1 in a container it also forwards signals and reaps orphans.

mod control;
mod detach;
mod gateway;
mod gpu_memory;
mod http;
mod kernel_log;
mod logging;
mod node_info;
mod pipelines;
mod preflight;
mod reload;
mod systemd;

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

/// Runs the agent until `until`. `state_dir_flag`: the state dir came from `--state-dir`
/// (a reload keeps it instead of reading it from the config again).
pub fn run_foreground(
    config: Config,
    state_dir_flag: bool,
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
    // Before any thread starts: it edits the environment.
    let notify = systemd::SystemdNotify::take_from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let config = Arc::new(config);
    let reloader = reload::Reloader {
        config: config.clone(),
        state_dir_flag,
        sysroot: sysroot.map(Path::to_path_buf),
        force,
    };
    let result = runtime.block_on(agent_main(config, instances, until, reloader, notify));
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

/// What the agent made and must unmake on every way out, however it ends.
struct Made {
    ctx: Arc<SupervisorContext>,
    cgroups: Arc<CgroupDriver>,
    state_dir: StateDir,
}

impl Made {
    /// Removes this agent's groups and socket, and says it stopped.
    fn teardown(&self) {
        self.cgroups.cleanup();
        let _ = std::fs::remove_file(self.state_dir.socket());
        self.ctx.emit(None, EventKind::AgentStopped);
    }
}

async fn agent_main(
    config: Arc<Config>,
    instances: Vec<steward_plan::Instance>,
    until: Until,
    reloader: reload::Reloader,
    notify: Option<systemd::SystemdNotify>,
) -> Result<Outcome> {
    let started = Instant::now();
    let state_dir = config.state_dir.clone();
    // First what can fail for a reason of the config or the host, before anything is made:
    // a port in use, the queue, the event log, the control socket.
    let gateway_listeners = gateway::bind_gateway(&config).await?;
    let http_listener = http::bind(&config).await?;
    let mut instances = instances;
    let lease_endpoint = steward_pipelines::lease_listener(&config, &mut instances).await?;
    let store = pipelines::open_at_start(&config).await?;
    let events = Arc::new(EventLog::open(&state_dir.events())?);
    let reaper = Reaper::start().context("cannot become the child subreaper")?;
    let socket = steward_api::bind_socket(&state_dir)?;

    // From here on, what is made is unmade however the agent ends.
    let id = state_dir.agent_id();
    let cgroups = Arc::new(CgroupDriver::detect(&id));
    let ctx = Arc::new(SupervisorContext::new(
        reaper,
        cgroups.clone(),
        events,
        state_dir.logs(),
        id,
    ));
    let made = Made {
        ctx: ctx.clone(),
        cgroups: cgroups.clone(),
        state_dir: state_dir.clone(),
    };
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

    // One copy of each instance, shared by the supervisor, the pipelines and the views.
    let instances: Arc<[Arc<steward_plan::Instance>]> =
        instances.into_iter().map(Arc::new).collect();
    let supervisor = match Supervisor::new(ctx.clone(), &config, &instances) {
        Ok(s) => s,
        Err(e) => {
            made.teardown();
            return Err(e.into());
        }
    };
    let kernel_log = kernel_log::watch(supervisor.clone());
    let gpus = Arc::new(gpu_memory::GpuReader::new(reloader.sysroot.as_deref()));
    let run = Running {
        config: &config,
        ctx: &ctx,
        supervisor: &supervisor,
        instances: &instances,
        until,
        reloader,
        basics: AgentBasics {
            config: config.path.clone(),
            state_dir: state_dir.clone(),
            started,
            kernel_log: kernel_log.err(),
            gpus,
        },
    };
    let result = run
        .serve(
            socket,
            gateway_listeners,
            http_listener,
            lease_endpoint,
            store,
            notify,
        )
        .await;
    made.teardown();
    result
}

/// The agent between start and stop.
struct Running<'a> {
    config: &'a Arc<Config>,
    ctx: &'a Arc<SupervisorContext>,
    supervisor: &'a Arc<Supervisor>,
    instances: &'a Arc<[Arc<steward_plan::Instance>]>,
    until: Until,
    reloader: reload::Reloader,
    basics: AgentBasics,
}

impl Running<'_> {
    /// Starts the services, the control socket, the gateway and the pipelines, answers
    /// requests until told to stop, then stops everything it started (also when a part of
    /// it failed to start).
    async fn serve(
        &self,
        socket: tokio::net::UnixListener,
        gateway_listeners: Option<gateway::GatewayListeners>,
        http_listener: Option<steward_http::HttpListener>,
        lease_endpoint: Option<steward_pipelines::LeaseEndpoint>,
        store: pipelines::StoreStart,
        notify: Option<systemd::SystemdNotify>,
    ) -> Result<Outcome> {
        let (req_tx, mut req_rx) = mpsc::channel(64);
        let server = tokio::spawn(steward_api::serve(
            socket,
            self.basics.state_dir.clone(),
            req_tx,
        ));
        self.supervisor.start_all();
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let opened = Arc::new(std::sync::OnceLock::new());
        let gateway_state = Arc::new(std::sync::OnceLock::new());
        let systemd =
            notify.map(|n| tokio::spawn(n.run(self.supervisor.clone(), shutdown_rx.clone())));
        let gateway = gateway_listeners
            .and_then(|l| {
                gateway::start_gateway(
                    self.config,
                    l,
                    Some(self.supervisor.clone()),
                    shutdown_rx.clone(),
                )
            })
            .map(|(state, joined)| {
                let _ = gateway_state.set(state);
                joined
            });
        let http_face = http_listener.map(|l| {
            let view = Arc::new(http::AgentView::new(
                self.supervisor.clone(),
                self.config.clone(),
                self.basics.clone(),
                opened.clone(),
                gateway_state.clone(),
            ));
            tokio::spawn(steward_http::serve(l, view, shutdown_rx.clone()))
        });
        let owned = pipelines::Owned {
            config: self.config.clone(),
            ctx: self.ctx.clone(),
            supervisor: self.supervisor.clone(),
            instances: self.instances.clone(),
            until_empty: self.until == Until::Drained,
            opened,
        };
        let (started, late) = match store {
            pipelines::StoreStart::Ready(store) => (
                pipelines::start(&owned, store, lease_endpoint, shutdown_rx.clone()).await,
                None,
            ),
            pipelines::StoreStart::Later => (
                Ok(None),
                Some(pipelines::start_later(
                    owned,
                    lease_endpoint,
                    shutdown_rx.clone(),
                )),
            ),
        };
        let (mut pipelines, mut failed) = match started {
            Ok(p) => (p, None),
            Err(e) => (None, Some(e)),
        };
        let mut down_replies = Vec::new();
        if failed.is_none() {
            let bar = match (&pipelines, self.until) {
                (Some(p), Until::Drained) => {
                    crate::progress_bar::start(p.runners().to_vec(), shutdown_rx.clone())
                }
                _ => None,
            };
            if let Err(e) = self
                .answer(&mut req_rx, &mut pipelines, late, &mut down_replies)
                .await
            {
                failed = Some(e);
            }
            let _ = shutdown_tx.send(true);
            if let Some(bar) = bar {
                let _ = bar.await;
            }
        }
        let _ = shutdown_tx.send(true);
        if let Some(g) = gateway {
            let _ = g.await;
        }
        if let Some(h) = http_face {
            let _ = h.await;
        }
        let outcome = match pipelines {
            Some(p) => p.finish().await,
            None => Vec::new(),
        };
        self.supervisor.stop_all().await;
        if let Some(s) = systemd {
            let _ = s.await;
        }
        for reply in down_replies {
            let _ = reply.send(Response::ok());
        }
        // Closing the request channel ends the server, which first writes the replies above.
        drop(req_rx);
        let _ = server.await;
        match failed {
            Some(e) => Err(e),
            None => Ok(outcome),
        }
    }

    /// Answers the control socket and the signals until one of them says stop.
    async fn answer(
        &self,
        req_rx: &mut mpsc::Receiver<steward_api::Incoming>,
        pipelines: &mut Option<steward_pipelines::Pipelines>,
        mut late: Option<tokio::task::JoinHandle<Result<Option<steward_pipelines::Pipelines>>>>,
        down_replies: &mut Vec<tokio::sync::oneshot::Sender<Response>>,
    ) -> Result<()> {
        let mut drained = match (pipelines.as_mut(), &late) {
            (Some(p), _) => Some(p.drained()),
            // Nothing to drain, unless pipelines are still to start.
            (None, None) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let _ = tx.send(());
                Some(rx)
            }
            (None, Some(_)) => None,
        };
        let until = self.until;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sighup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = maybe(drained.as_mut()), if until == Until::Drained => { tracing::info!("every queue is drained: stopping"); return Ok(()); }
                started = maybe(late.as_mut()) => {
                    late = None;
                    match started {
                        Ok(Ok(Some(mut p))) => {
                            drained = Some(p.drained());
                            *pipelines = Some(p);
                        }
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => return Err(e),
                        Err(e) => return Err(anyhow::anyhow!("the pipelines' start failed: {e}")),
                    }
                }
                _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping every service"); return Ok(()); }
                _ = sigint.recv() => { tracing::info!("SIGINT: stopping every service"); return Ok(()); }
                _ = sighup.recv() => {
                    // As a container's init, SIGHUP is for the services (tini's way);
                    // anywhere else it means: read the config again (systemd's way).
                    if std::process::id() == 1 {
                        tracing::info!("SIGHUP: forwarding it to every service");
                        self.supervisor.signal_all(Signal::SIGHUP).await;
                    } else {
                        tracing::info!("SIGHUP: reloading the config");
                        let (sup, reloader) = (self.supervisor.clone(), self.reloader.clone());
                        tokio::spawn(async move { log_reload(&reloader.reload(&sup).await) });
                    }
                }
                Some((req, reply)) = req_rx.recv() => {
                    if req == Request::Down {
                        down_replies.push(reply);
                        return Ok(());
                    }
                    if req == Request::Reload {
                        let (sup, reloader) = (self.supervisor.clone(), self.reloader.clone());
                        tokio::spawn(async move {
                            let answer = reloader.reload(&sup).await;
                            log_reload(&answer);
                            let _ = reply.send(answer);
                        });
                        continue;
                    }
                    let sup = self.supervisor.clone();
                    let info = self.basics.clone();
                    tokio::spawn(async move {
                        let _ = reply.send(handle(&sup, &info, req).await);
                    });
                }
            }
        }
    }
}

/// `f`'s output, or never when there is no `f` (a `select!` branch that is off).
async fn maybe<F: std::future::Future + Unpin>(f: Option<&mut F>) -> F::Output {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// What a reload did, on the agent's log.
fn log_reload(answer: &Response) {
    match (&answer.reload, &answer.error) {
        (Some(r), _) => tracing::info!(
            "reloaded: started {:?}, stopped {:?}, restarted {:?}, {} unchanged{}",
            r.started,
            r.stopped,
            r.restarted,
            r.unchanged.len(),
            if r.not_applied.is_empty() {
                String::new()
            } else {
                format!(
                    "; not applied (restart the agent for these): {}",
                    r.not_applied.join(", ")
                )
            }
        ),
        (None, Some(e)) => tracing::warn!("reload: {e}"),
        (None, None) => {}
    }
}

/// The agent should outlive its services when memory runs out, so that it can report the
/// OOM and restart them. Lowering the score needs CAP_SYS_RESOURCE; without it, nothing
/// changes.
fn set_own_oom_score_adj() {
    let _ = std::fs::write("/proc/self/oom_score_adj", "-500");
}
