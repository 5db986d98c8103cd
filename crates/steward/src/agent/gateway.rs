//! The gateway inside the agent (`[gateway]` in `up`) or alone (`steward gateway`).

use anyhow::{bail, Context, Result};
use std::sync::Arc;
use steward_config::Config;
use steward_supervise::Supervisor;
use tokio::signal::unix::{signal, SignalKind};

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

/// The gateway's sockets, bound before anything else starts, so that a port in use fails
/// `up` before it has touched a cgroup, the control socket or a service.
pub(super) struct GatewayListeners {
    main: tokio::net::TcpListener,
    metrics: Option<tokio::net::TcpListener>,
}

async fn bind(config: &Config, key: &str, addr: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!(
            "{}: gateway.{key} = {addr:?}: cannot listen there",
            config.path.display()
        )
    })
}

/// Binds the [gateway]'s listeners when the config has one.
pub(super) async fn bind_gateway(config: &Config) -> Result<Option<GatewayListeners>> {
    let Some(g) = &config.gateway else {
        return Ok(None);
    };
    let main = bind(config, "listen", &g.listen).await?;
    let metrics = match &g.metrics_listen {
        Some(addr) => Some(bind(config, "metrics_listen", addr).await?),
        None => None,
    };
    Ok(Some(GatewayListeners { main, metrics }))
}

/// Serves the [gateway] on its listeners until `shutdown` turns true. With `supervisor`,
/// backends that are services take their health from it.
pub(super) fn start_gateway(
    config: &Config,
    listeners: GatewayListeners,
    supervisor: Option<Arc<Supervisor>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Option<(
    Arc<steward_gateway::GatewayState>,
    tokio::task::JoinHandle<()>,
)> {
    let g = config.gateway.as_ref()?;
    if let Ok(addr) = listeners.main.local_addr() {
        tracing::info!("gateway listening on http://{addr}");
    }
    let state = match supervisor {
        Some(s) => {
            steward_gateway::GatewayState::with_services(g.clone(), Arc::new(SupervisedServices(s)))
        }
        None => steward_gateway::GatewayState::new(g.clone()),
    };
    let metrics = listeners.metrics.map(|l| {
        if let Ok(addr) = l.local_addr() {
            tracing::info!("gateway metrics on http://{addr}/metrics");
        }
        tokio::spawn(steward_gateway::serve_metrics(
            l,
            state.clone(),
            shutdown.clone(),
        ))
    });
    let main = tokio::spawn(steward_gateway::serve(
        listeners.main,
        state.clone(),
        shutdown,
    ));
    let joined = tokio::spawn(async move {
        let _ = main.await;
        if let Some(m) = metrics {
            let _ = m.await;
        }
    });
    Some((state, joined))
}

/// `steward gateway`: only the gateway, in the foreground, until SIGINT or SIGTERM.
pub fn run_gateway_only(config: Config) -> Result<()> {
    if config.gateway.is_none() {
        bail!("{} has no [gateway] section", config.path.display());
    }
    super::logging::init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let listeners = bind_gateway(&config).await?;
        let handle = listeners
            .and_then(|l| start_gateway(&config, l, None, rx))
            .map(|(_, joined)| joined);
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
