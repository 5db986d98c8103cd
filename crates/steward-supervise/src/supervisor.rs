//! The set of services of one agent, and the commands `ps`, `start`, `stop`, `restart`
//! and `down` act through.

use crate::backoff::RestartTracker;
use crate::cgroup::CgroupDriver;
use crate::output::LogFiles;
use crate::reaper::Reaper;
use crate::service::{Control, Runner, Shared};
use crate::status::ServiceStatus;
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use steward_config::{Config, Service};
use steward_events::{Event, EventKind, EventLog};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("no service named \"{name}\"; this config has: {known}")]
    UnknownService { name: String, known: String },
    #[error("cannot open the log folder {}: {source}", path.display())]
    Logs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the service task for \"{0}\" has ended")]
    TaskGone(String),
}

/// What every service task shares.
pub struct SupervisorContext {
    pub reaper: Arc<Reaper>,
    pub cgroups: Arc<CgroupDriver>,
    pub events: Arc<EventLog>,
    /// `state_dir/logs`.
    pub logs_dir: PathBuf,
    /// Names this agent's cgroups and marks its processes; stable per state dir.
    pub agent_id: String,
}

pub(crate) type Context = SupervisorContext;

impl SupervisorContext {
    /// Appends to `events.jsonl` and prints the same event on the agent's log.
    pub fn emit(&self, service: Option<&str>, kind: EventKind) {
        let event = Event::new(service, kind);
        tracing::info!("{}", event.summary());
        if let Err(e) = self.events.append(&event) {
            tracing::warn!("{e}");
        }
    }
}

struct Handle {
    service: Service,
    unit: String,
    tx: mpsc::Sender<Control>,
    shared: Arc<Mutex<Shared>>,
}

pub struct Supervisor {
    ctx: Arc<SupervisorContext>,
    services: BTreeMap<String, Handle>,
}

impl Supervisor {
    /// Creates a task for every service, all stopped until [`Supervisor::start_all`].
    pub fn new(ctx: Arc<SupervisorContext>, config: &Config) -> Result<Self, SuperviseError> {
        let mut services = BTreeMap::new();
        for (name, svc) in &config.services {
            let dir = ctx.logs_dir.join(name);
            let logs = LogFiles::open(&dir, svc.log)
                .map_err(|source| SuperviseError::Logs { path: dir, source })?;
            let (tx, rx) = mpsc::channel(16);
            let shared = Arc::new(Mutex::new(Shared::new()));
            let unit = format!("{}/{}", ctx.agent_id, name);
            let runner = Runner {
                svc: svc.clone(),
                unit: unit.clone(),
                ctx: ctx.clone(),
                rx,
                shared: shared.clone(),
                logs: Arc::new(Mutex::new(logs)),
                tracker: RestartTracker::new(svc.backoff, svc.crash_loop),
                waiting_for_spawn: Vec::new(),
            };
            tokio::spawn(runner.run());
            services.insert(
                name.clone(),
                Handle {
                    service: svc.clone(),
                    unit,
                    tx,
                    shared,
                },
            );
        }
        Ok(Supervisor { ctx, services })
    }

    pub fn context(&self) -> &SupervisorContext {
        &self.ctx
    }

    fn handle(&self, name: &str) -> Result<&Handle, SuperviseError> {
        self.services
            .get(name)
            .ok_or_else(|| SuperviseError::UnknownService {
                name: name.to_string(),
                known: self.services.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    async fn send(
        &self,
        name: &str,
        make: fn(oneshot::Sender<()>) -> Control,
    ) -> Result<(), SuperviseError> {
        let handle = self.handle(name)?;
        let (done, wait) = oneshot::channel();
        handle
            .tx
            .send(make(done))
            .await
            .map_err(|_| SuperviseError::TaskGone(name.to_string()))?;
        wait.await
            .map_err(|_| SuperviseError::TaskGone(name.to_string()))
    }

    /// Starts a service; returns once its process has been spawned (or failed to).
    pub async fn start(&self, name: &str) -> Result<(), SuperviseError> {
        self.send(name, Control::Start).await
    }

    /// Stops a service; returns once none of its processes is left.
    pub async fn stop(&self, name: &str) -> Result<(), SuperviseError> {
        self.send(name, Control::Stop).await
    }

    /// Stops and starts a service without backoff.
    pub async fn restart(&self, name: &str) -> Result<(), SuperviseError> {
        self.send(name, Control::Restart).await
    }

    /// Starts every service at once; returns once each has been spawned (or failed to).
    pub async fn start_all(&self) {
        self.broadcast(Control::Start).await;
    }

    /// Stops every service at once; returns once all are down.
    pub async fn stop_all(&self) {
        self.broadcast(Control::Stop).await;
    }

    /// Sends a command to every service first, then waits for every reply, so that slow
    /// stops overlap instead of adding up.
    async fn broadcast(&self, make: fn(oneshot::Sender<()>) -> Control) {
        let mut replies = Vec::new();
        for h in self.services.values() {
            let (done, wait) = oneshot::channel();
            if h.tx.send(make(done)).await.is_ok() {
                replies.push(wait);
            }
        }
        for r in replies {
            let _ = r.await;
        }
    }

    /// Forwards a signal (SIGHUP, say) to every running service's process group.
    pub async fn signal_all(&self, sig: Signal) {
        for h in self.services.values() {
            let _ = h.tx.send(Control::Signal(sig)).await;
        }
    }

    pub fn status(&self) -> Vec<ServiceStatus> {
        let enforcement = self.ctx.cgroups.enforcement();
        self.services
            .values()
            .map(|h| {
                h.shared.lock().unwrap_or_else(|p| p.into_inner()).snapshot(
                    &h.service,
                    &h.unit,
                    enforcement,
                )
            })
            .collect()
    }
}
