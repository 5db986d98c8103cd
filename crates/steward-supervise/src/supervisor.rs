//! The instances of one agent, and the order they start and stop in: dependencies first
//! (`depends_on` with `started`, `healthy` or `completed`), dependents stopped first, and
//! replicas of a service started in replica order, staggered, one at a time per GPU.

use crate::context::SupervisorContext;
use crate::output::LogFiles;
use crate::service::{Control, Task, TaskState};
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use steward_api::{ServiceState, ServiceStatus};
use steward_config::{Condition, Config, Service};
use steward_plan::Instance;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

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
    #[error("the task for \"{0}\" has ended")]
    TaskGone(String),
    #[error("cannot start {service}: {why}")]
    Blocked { service: String, why: String },
    #[error("{instance} did not become ready: {why}; the rolling restart stopped there")]
    NotReady { instance: String, why: String },
}

#[derive(Clone)]
struct Handle {
    inst: Instance,
    service: Arc<Service>,
    unit: String,
    tx: mpsc::Sender<Control>,
    /// The task's state; only the task writes it.
    state: watch::Receiver<TaskState>,
}

impl Handle {
    fn read<T>(&self, f: impl FnOnce(&TaskState) -> T) -> T {
        f(&self.state.borrow())
    }

    async fn send(&self, make: fn(oneshot::Sender<()>) -> Control) -> Result<(), SuperviseError> {
        let (done, wait) = oneshot::channel();
        let gone = || SuperviseError::TaskGone(self.inst.name.clone());
        self.tx.send(make(done)).await.map_err(|_| gone())?;
        wait.await.map_err(|_| gone())
    }
}

/// Where a dependency stands for one dependent.
enum DepState {
    Met,
    Waiting(String),
    Blocked(String),
}

pub struct Supervisor {
    ctx: Arc<SupervisorContext>,
    /// In service order, then replica order.
    instances: Vec<Handle>,
    services: BTreeMap<String, Arc<Service>>,
    depth: BTreeMap<String, usize>,
    /// Start-ups waiting on dependencies, by service, so that a stop can cancel them.
    starters: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl Supervisor {
    /// Creates a task for every instance, all stopped until [`Supervisor::start_all`].
    pub fn new(
        ctx: Arc<SupervisorContext>,
        config: &Config,
        instances: Vec<Instance>,
    ) -> Result<Arc<Self>, SuperviseError> {
        // Per-job pipeline slots have no long-running process; the pipeline runs jobs in them.
        let services: BTreeMap<String, Arc<Service>> = config
            .workloads()
            .filter(|s| !s.per_job)
            .map(|s| (s.name.clone(), Arc::new(s.clone())))
            .collect();
        let mut handles = Vec::new();
        for inst in instances {
            let Some(svc) = services.get(&inst.service).cloned() else {
                continue;
            };
            let dir = ctx.logs_dir.join(&inst.name);
            let logs = LogFiles::open(&dir, svc.log)
                .map_err(|source| SuperviseError::Logs { path: dir, source })?;
            let (tx, rx) = mpsc::channel(16);
            let (state_tx, state) = watch::channel(TaskState::new());
            let unit = format!("{}/{}", ctx.agent_id, inst.name);
            let task = Task::new(inst.clone(), svc.clone(), ctx.clone(), rx, state_tx, logs);
            tokio::spawn(task.run());
            handles.push(Handle {
                inst,
                service: svc,
                unit,
                tx,
                state,
            });
        }
        let graph = services
            .values()
            .map(|s| (s.name.clone(), s.depends_on.keys().cloned().collect()))
            .collect();
        Ok(Arc::new(Supervisor {
            ctx,
            instances: handles,
            depth: steward_config::depths(&graph),
            services,
            starters: Mutex::new(HashMap::new()),
        }))
    }

    pub fn context(&self) -> &SupervisorContext {
        &self.ctx
    }

    fn of_service(&self, service: &str) -> Vec<&Handle> {
        self.instances
            .iter()
            .filter(|h| h.inst.service == service)
            .collect()
    }

    /// The instances a name means: every replica of a service, or one `svc#i`.
    fn resolve(&self, name: &str) -> Result<Vec<&Handle>, SuperviseError> {
        let by_service = self.of_service(name);
        if !by_service.is_empty() {
            return Ok(by_service);
        }
        match self.instances.iter().find(|h| h.inst.name == name) {
            Some(h) => Ok(vec![h]),
            None => Err(SuperviseError::UnknownService {
                name: name.to_string(),
                known: self.services.keys().cloned().collect::<Vec<_>>().join(", "),
            }),
        }
    }

    fn dep_state(&self, dep: &str, cond: Condition) -> DepState {
        for h in self.of_service(dep) {
            let (state, running, ready, last) =
                h.read(|s| (s.state, s.pid.is_some(), s.ready, s.last_exit.clone()));
            let name = &h.inst.name;
            let why = last.map(|c| c.to_string()).unwrap_or_default();
            match state {
                ServiceState::Failed => return DepState::Blocked(format!("{name} failed ({why})")),
                ServiceState::CrashLoop => {
                    return DepState::Blocked(format!("{name} is in a crash loop ({why})"))
                }
                _ => {}
            }
            let met = match cond {
                Condition::Started => running || state == ServiceState::Exited,
                Condition::Healthy => running && ready,
                Condition::Completed => state == ServiceState::Exited,
            };
            if !met {
                return DepState::Waiting(format!("{dep} to be {cond}"));
            }
        }
        DepState::Met
    }

    /// Waits until every dependency of `service` meets its condition. While waiting, its
    /// instances show what they wait for. With `fail_if_blocked`, a failed dependency is an
    /// error instead of something to wait out.
    async fn wait_for_dependencies(
        &self,
        service: &str,
        fail_if_blocked: bool,
    ) -> Result<(), SuperviseError> {
        let Some(svc) = self.services.get(service).cloned() else {
            return Ok(());
        };
        let mut changes = self.ctx.subscribe_changes();
        let mut shown: Option<Option<String>> = None;
        loop {
            let mut waiting = Vec::new();
            for (dep, cond) in &svc.depends_on {
                match self.dep_state(dep, *cond) {
                    DepState::Met => {}
                    DepState::Waiting(w) => waiting.push(w),
                    DepState::Blocked(b) => {
                        if fail_if_blocked {
                            return Err(SuperviseError::Blocked {
                                service: service.to_string(),
                                why: format!("its dependency {b}"),
                            });
                        }
                        waiting.push(format!("blocked: {b}"));
                    }
                }
            }
            let text = (!waiting.is_empty()).then(|| waiting.join("; "));
            // Each instance's task shows it; told again only when it changes.
            if shown.as_ref() != Some(&text) {
                for h in self.of_service(service) {
                    let _ = h.tx.send(Control::Waiting(text.clone())).await;
                }
                shown = Some(text);
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if changes.changed().await.is_err() {
                return Ok(());
            }
        }
    }

    /// Starts a service's instances: in replica order, `start_stagger` apart; replicas on
    /// the same GPU one after another (each waits for its GPU's lock inside its task).
    async fn start_instances(&self, service: &str) -> Result<(), SuperviseError> {
        let handles: Vec<Handle> = self.of_service(service).into_iter().cloned().collect();
        let Some(svc) = self.services.get(service) else {
            return Ok(());
        };
        let stagger = svc.start_stagger.0;
        let t0 = tokio::time::Instant::now();
        let mut groups: BTreeMap<Option<u32>, Vec<Handle>> = BTreeMap::new();
        for h in handles {
            groups
                .entry(h.inst.gpu.as_ref().map(|g| g.index))
                .or_default()
                .push(h);
        }
        let mut tasks = Vec::new();
        for (_, group) in groups {
            tasks.push(tokio::spawn(async move {
                for h in group {
                    tokio::time::sleep_until(t0 + stagger * h.inst.replica).await;
                    h.send(Control::Start).await?;
                }
                Ok::<(), SuperviseError>(())
            }));
        }
        for t in tasks {
            t.await
                .map_err(|_| SuperviseError::TaskGone(service.to_string()))??;
        }
        Ok(())
    }

    /// Starts every service: each waits for its own dependencies, independent services
    /// start in parallel. Returns at once; `ps` shows what waits on what.
    pub fn start_all(self: &Arc<Self>) {
        for name in self.services.keys() {
            self.spawn_starter(name);
        }
    }

    fn spawn_starter(self: &Arc<Self>, name: &str) {
        let sup = self.clone();
        let service = name.to_string();
        let task = tokio::spawn(async move {
            if sup.wait_for_dependencies(&service, false).await.is_ok() {
                if let Err(e) = sup.start_instances(&service).await {
                    tracing::warn!("{e}");
                }
            }
        });
        let mut starters = self.starters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = starters.insert(name.to_string(), task) {
            old.abort();
        }
    }

    fn cancel_starter(&self, service: &str) {
        if let Some(task) = self
            .starters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(service)
        {
            task.abort();
        }
    }

    /// Starts a service (or one replica), starting its stopped dependencies first; returns
    /// once its processes are spawned. A dependency that failed is an error.
    pub async fn start(self: &Arc<Self>, name: &str) -> Result<(), SuperviseError> {
        let handles: Vec<Handle> = self.resolve(name)?.into_iter().cloned().collect();
        let service = handles[0].inst.service.clone();
        Box::pin(self.start_dependencies(&service)).await?;
        self.wait_for_dependencies(&service, true).await?;
        if handles.len() == 1 && handles[0].inst.name != service {
            return handles[0].send(Control::Start).await;
        }
        self.start_instances(&service).await
    }

    async fn start_dependencies(self: &Arc<Self>, service: &str) -> Result<(), SuperviseError> {
        let Some(svc) = self.services.get(service).cloned() else {
            return Ok(());
        };
        for dep in svc.depends_on.keys() {
            let idle = self
                .of_service(dep)
                .iter()
                .all(|h| h.read(|s| s.state == ServiceState::Stopped));
            if idle {
                self.start(dep).await?;
            }
        }
        Ok(())
    }

    /// Stops a service (or one replica); returns once none of its processes is left.
    pub async fn stop(&self, name: &str) -> Result<(), SuperviseError> {
        let handles = self.resolve(name)?;
        if handles.len() > 1 || handles[0].inst.name == handles[0].inst.service {
            self.cancel_starter(&handles[0].inst.service);
        }
        let replies: Vec<_> = handles.iter().map(|h| h.send(Control::Stop)).collect();
        for r in replies {
            r.await?;
        }
        Ok(())
    }

    /// Restarts a service's replicas one at a time (a rolling restart): each must be ready
    /// again before the next goes down. Replicas on a GPU still take its lock.
    pub async fn restart(&self, name: &str) -> Result<(), SuperviseError> {
        let handles: Vec<Handle> = self.resolve(name)?.into_iter().cloned().collect();
        self.wait_for_dependencies(&handles[0].inst.service, true)
            .await?;
        for h in &handles {
            h.send(Control::Restart).await?;
            if handles.len() > 1 {
                self.wait_ready(h).await?;
            }
        }
        Ok(())
    }

    /// Waits until a just-restarted instance is ready. Being unhealthy for a while is part
    /// of starting (compose counts failures before the first success); exiting is not.
    /// The wait is bounded by what its health check allows, plus a minute.
    async fn wait_ready(&self, h: &Handle) -> Result<(), SuperviseError> {
        let limit = h.service.health.as_ref().map_or(Duration::ZERO, |c| {
            c.start_period.0 + c.interval.0 * (c.retries + 1)
        }) + Duration::from_secs(60);
        let deadline = tokio::time::Instant::now() + limit;
        let mut changes = self.ctx.subscribe_changes();
        loop {
            let (state, ready, running, health_error, last) = h.read(|s| {
                (
                    s.state,
                    s.ready,
                    s.pid.is_some(),
                    s.health_error.clone(),
                    s.last_exit.clone(),
                )
            });
            if ready && running {
                return Ok(());
            }
            if !matches!(
                state,
                ServiceState::Running | ServiceState::Waiting | ServiceState::Stopping
            ) {
                let why = format!(
                    "{state}{}",
                    last.map(|c| format!(", {c}")).unwrap_or_default()
                );
                return Err(SuperviseError::NotReady {
                    instance: h.inst.name.clone(),
                    why,
                });
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Ok(()),
                Err(_) => {
                    let why = format!(
                        "still not ready after {}{}",
                        humantime::format_duration(limit),
                        health_error
                            .map(|e| format!(" (last check: {e})"))
                            .unwrap_or_default()
                    );
                    return Err(SuperviseError::NotReady {
                        instance: h.inst.name.clone(),
                        why,
                    });
                }
            }
        }
    }

    /// Stops everything: dependents before what they depend on, each level in parallel.
    pub async fn stop_all(&self) {
        for task in self
            .starters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
        {
            task.1.abort();
        }
        let max = self.depth.values().copied().max().unwrap_or(0);
        for level in (0..=max).rev() {
            let replies: Vec<_> = self
                .instances
                .iter()
                .filter(|h| self.depth.get(&h.inst.service).copied().unwrap_or(0) == level)
                .map(|h| h.send(Control::Stop))
                .collect();
            for r in replies {
                if let Err(e) = r.await {
                    tracing::warn!("{e}");
                }
            }
        }
    }

    /// Forwards a signal (SIGHUP, say) to every running instance's process group.
    pub async fn signal_all(&self, sig: Signal) {
        for h in &self.instances {
            let _ = h.tx.send(Control::Signal(sig)).await;
        }
    }

    pub fn status(&self) -> Vec<ServiceStatus> {
        let enforcement = self.ctx.cgroups.enforcement();
        self.instances
            .iter()
            .map(|h| h.read(|s| s.snapshot(&h.inst, &h.service, &h.unit, enforcement)))
            .collect()
    }
}
