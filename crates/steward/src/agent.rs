//! `steward up`: the agent. It owns the state dir (lock, socket), supervises every service,
//! answers the control API, and on SIGTERM/SIGINT (or `steward down`) stops everything
//! before it exits. As PID 1 in a container it also forwards signals and reaps orphans.

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use steward_api::{AgentInfo, PsReply, Request, Response, StateDirLock};
use steward_config::{Config, StateDir};
use steward_events::{EventKind, EventLog};
use steward_supervise::{CgroupDriver, Reaper, Supervisor, SupervisorContext};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// Checks what can be checked before anything starts, so `up` fails whole instead of
/// half-starting: every program exists, and the plan fits the host (unless `force`).
pub fn preflight(
    config: &Config,
    sysroot: Option<&Path>,
    force: bool,
) -> Result<Vec<steward_plan::Instance>> {
    for svc in config.workloads() {
        if let Err(why) = steward_supervise::preflight(svc) {
            bail!(
                "{}: services.{}.command: {why}",
                config.path.display(),
                svc.name
            );
        }
    }
    let facts = crate::node::gather(sysroot, &config.state_dir);
    let plan = crate::node::plan(config, &facts)?;
    if !plan.admission.admitted {
        if force {
            eprintln!("{}", steward_plan::render(&plan));
            eprintln!(
                "WARNING: the plan does not fit this host; starting anyway because of --force"
            );
        } else {
            eprint!("{}", steward_plan::render(&plan));
            let first = &plan.admission.refusals[0];
            bail!(
                "{}: {}: {} (refusing to start; fix the config, or `steward up --force` to start anyway)",
                config.path.display(),
                first.key,
                first.message
            );
        }
    }
    Ok(plan.instances)
}

/// The supervisor, as the gateway sees it: a service backend is routable while one of
/// its instances runs and is ready (healthy, READY=1, or simply running without a check).
struct SupervisedServices(Arc<Supervisor>);

impl steward_gateway::ServiceStates for SupervisedServices {
    fn ready(&self, service: &str) -> std::result::Result<(), String> {
        let instances: Vec<_> = self
            .0
            .status()
            .into_iter()
            .filter(|s| s.service == service)
            .collect();
        if instances
            .iter()
            .any(|s| s.ready && s.state == steward_api::ServiceState::Running)
        {
            return Ok(());
        }
        let states: Vec<String> = instances
            .iter()
            .map(|s| match (s.state, &s.last_health_error) {
                (steward_api::ServiceState::Running, Some(e)) => {
                    format!("{}: not ready ({e})", s.name)
                }
                (steward_api::ServiceState::Running, None) => format!("{}: starting", s.name),
                (state, _) => format!("{}: {state}", s.name),
            })
            .collect();
        Err(states.join(", "))
    }
}

/// Starts the [gateway] when the config has one; it stops when `shutdown` turns true.
/// With `supervisor`, backends that are services take their health from it.
async fn start_gateway(
    config: &Config,
    supervisor: Option<Arc<Supervisor>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(g) = &config.gateway else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(&g.listen)
        .await
        .with_context(|| {
            format!(
                "{}: gateway.listen = {:?}: cannot listen there",
                config.path.display(),
                g.listen
            )
        })?;
    tracing::info!("gateway listening on http://{}", listener.local_addr()?);
    let state = match supervisor {
        Some(s) => {
            steward_gateway::GatewayState::with_services(g.clone(), Arc::new(SupervisedServices(s)))
        }
        None => steward_gateway::GatewayState::new(g.clone()),
    };
    Ok(Some(tokio::spawn(steward_gateway::serve(
        listener, state, shutdown,
    ))))
}

/// `steward gateway`: only the gateway, in the foreground, until SIGINT or SIGTERM.
pub fn run_gateway_only(config: Config) -> Result<()> {
    if config.gateway.is_none() {
        bail!("{} has no [gateway] section", config.path.display());
    }
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let handle = start_gateway(&config, None, rx).await?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = tx.send(true);
        if let Some(h) = handle {
            let _ = h.await;
        }
        Ok(())
    })
}

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

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STEWARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
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
    let gateway = start_gateway(&config, Some(supervisor.clone()), shutdown_rx.clone()).await?;
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

#[derive(Clone)]
struct AgentBasics {
    config: PathBuf,
    state_dir: StateDir,
    started: Instant,
}

async fn handle(sup: &Arc<Supervisor>, info: &AgentBasics, req: Request) -> Response {
    let result = match req {
        Request::Ping => Ok(()),
        Request::Ps => {
            let ctx = sup.context();
            return Response {
                ps: Some(PsReply {
                    agent: AgentInfo {
                        pid: std::process::id(),
                        config: info.config.display().to_string(),
                        state_dir: info.state_dir.to_string(),
                        cgroups: ctx.cgroups.describe(),
                        uptime_ms: info.started.elapsed().as_millis() as u64,
                        orphans_reaped: ctx.reaper.orphans_reaped(),
                    },
                    services: sup.status(),
                }),
                ..Response::ok()
            };
        }
        Request::Start { service } => sup.start(&service).await,
        Request::Stop { service } => sup.stop(&service).await,
        Request::Restart { service } => sup.restart(&service).await,
        Request::Down => Ok(()),
    };
    match result {
        Ok(()) => Response::ok(),
        Err(e) => Response::error(e.to_string()),
    }
}

/// The agent should outlive its services when memory runs out, so that it can report the
/// OOM and restart them. Lowering the score needs CAP_SYS_RESOURCE; without it, nothing
/// changes.
fn set_own_oom_score_adj() {
    let _ = std::fs::write("/proc/self/oom_score_adj", "-500");
}

/// `up --detach`: starts the agent in its own session, waits until its socket answers,
/// and reports where its log is.
pub fn run_detached(
    config: &Config,
    config_arg: &Path,
    sysroot: Option<&Path>,
    force: bool,
) -> Result<()> {
    std::fs::create_dir_all(config.state_dir.path())
        .with_context(|| format!("cannot create the state dir {}", config.state_dir))?;
    // Refuse early, with the same message as the foreground agent would give.
    drop(StateDirLock::acquire(&config.state_dir)?);
    preflight(config, sysroot, force)?;
    let log_path = config.state_dir.agent_log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the steward binary to re-run")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("up")
        .arg("-f")
        .arg(std::path::absolute(config_arg).unwrap_or_else(|_| config_arg.to_path_buf()));
    if force {
        cmd.arg("--force");
    }
    if let Some(root) = sysroot {
        cmd.arg("--sysroot")
            .arg(std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()));
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().context("cannot start the background agent")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut client) = steward_api::Client::connect(&config.state_dir) {
            if client.request(&Request::Ping).is_ok() {
                println!(
                    "steward agent running in the background (pid {}); its log: {}",
                    child.id(),
                    log_path.display()
                );
                return Ok(());
            }
        }
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let last = tail.lines().rev().take(5).collect::<Vec<_>>();
            bail!(
                "the background agent exited ({status}) before it was ready; last lines of {}:\n{}",
                log_path.display(),
                last.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the background agent did not answer within 30s; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
