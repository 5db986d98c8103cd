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

/// Starts the [gateway] when the config has one; it stops when `shutdown` turns true.
/// With `supervisor`, backends that are services take their health from it.
pub(super) async fn start_gateway(
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
    super::logging::init_logging();
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
