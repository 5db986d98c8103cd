//! The instances of one agent, and the order they start and stop in: dependencies first
//! (`depends_on` with `started`, `healthy` or `completed`), dependents stopped first, and
//! replicas of a service started in replica order, staggered, one at a time per GPU.

use crate::context::SupervisorContext;
use crate::error::SuperviseError;
use crate::handle::Handle;
use crate::reload::{diff, Side};
use crate::service::Control;
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use steward_api::{ReloadReport, ServiceState, ServiceStatus};
use steward_config::{Condition, Config, Service};
use steward_plan::Instance;
use tokio::task::JoinHandle;

/// Where a dependency stands for one dependent.
enum DepState {
    Met,
    Waiting(String),
    Blocked(String),
}

pub struct Supervisor {
    ctx: Arc<SupervisorContext>,
    /// What it supervises now; a reload swaps in a new set (keeping the handles of what
    /// did not change), so a command works on one consistent snapshot.
    set: RwLock<Arc<Set>>,
    /// Start-ups waiting on dependencies, by service, so that a stop can cancel them.
    starters: Mutex<HashMap<String, JoinHandle<()>>>,
}

/// The services and instances of one config.
struct Set {
    /// In service order, then replica order.
    instances: Vec<Handle>,
    services: BTreeMap<String, Arc<Service>>,
    depth: BTreeMap<String, usize>,
}

impl Set {
    fn of_service(&self, service: &str) -> Vec<Handle> {
        self.instances
            .iter()
            .filter(|h| h.inst.service == service)
            .cloned()
            .collect()
    }
}

/// Services by name, as a reload compares them.
fn side(services: &BTreeMap<String, Arc<Service>>) -> BTreeMap<&str, &Service> {
    services
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_ref()))
        .collect()
}

/// The services a config gives the supervisor: pipelines' per-job slots have no
/// long-running process (the pipeline runs jobs in them).
fn supervised(config: &Config) -> BTreeMap<String, Arc<Service>> {
    let services = config.services.values().cloned();
    let workers = config
        .pipelines
        .values()
        .map(|p| Arc::new(p.workers.clone()));
    services
        .chain(workers)
        .filter(|s| !s.per_job)
        .map(|s| (s.name.clone(), s))
        .collect()
}

fn depths(services: &BTreeMap<String, Arc<Service>>) -> BTreeMap<String, usize> {
    let graph = services
        .values()
        .map(|s| (s.name.clone(), s.depends_on.keys().cloned().collect()))
        .collect();
    steward_config::depths(&graph)
}

impl Supervisor {
    /// Creates a task for every instance, all stopped until [`Supervisor::start_all`].
    pub fn new(
        ctx: Arc<SupervisorContext>,
        config: &Config,
        instances: &[Arc<Instance>],
    ) -> Result<Arc<Self>, SuperviseError> {
        let services = supervised(config);
        let mut handles = Vec::with_capacity(instances.len());
        for inst in instances {
            if let Some(svc) = services.get(&inst.service).cloned() {
                handles.push(Handle::spawn(&ctx, inst.clone(), svc)?);
            }
        }
        Ok(Arc::new(Supervisor {
            ctx,
            set: RwLock::new(Arc::new(Set {
                instances: handles,
                depth: depths(&services),
                services,
            })),
            starters: Mutex::new(HashMap::new()),
        }))
    }

    fn set(&self) -> Arc<Set> {
        self.set.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn context(&self) -> &SupervisorContext {
        &self.ctx
    }

    pub fn context_arc(&self) -> Arc<SupervisorContext> {
        self.ctx.clone()
    }

    /// The instances a name means: every replica of a service, or one `svc#i`.
    fn resolve(&self, name: &str) -> Result<Vec<Handle>, SuperviseError> {
        let set = self.set();
        let by_service = set.of_service(name);
        if !by_service.is_empty() {
            return Ok(by_service);
        }
        match set.instances.iter().find(|h| h.inst.name == name) {
            Some(h) => Ok(vec![h.clone()]),
            None => Err(SuperviseError::UnknownService {
                name: name.to_string(),
                known: set.services.keys().cloned().collect::<Vec<_>>().join(", "),
            }),
        }
    }

    fn dep_state(&self, dep: &str, cond: Condition) -> DepState {
        for h in self.set().of_service(dep) {
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
        let Some(svc) = self.set().services.get(service).cloned() else {
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
                for h in self.set().of_service(service) {
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
        let set = self.set();
        let handles = set.of_service(service);
        let Some(svc) = set.services.get(service) else {
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
        for name in self.set().services.keys() {
            self.spawn_starter(name);
        }
    }

    fn spawn_starter(self: &Arc<Self>, name: &str) {
        let sup = self.clone();
        let service = name.to_string();
        // Held until the task is done with it, so that it cannot finish (and fail to find
        // itself) before it is in the map.
        let mut starters = self.starters.lock().unwrap_or_else(|p| p.into_inner());
        let task = tokio::spawn(async move {
            if sup.wait_for_dependencies(&service, false).await.is_ok() {
                if let Err(e) = sup.start_instances(&service).await {
                    tracing::warn!("{e}");
                }
            }
            // Done: its handle goes (a finished task's memory lives as long as its handle),
            // unless a newer starter has taken its place.
            let mut starters = sup.starters.lock().unwrap_or_else(|p| p.into_inner());
            if starters
                .get(&service)
                .is_some_and(|t| t.id() == tokio::task::id())
            {
                starters.remove(&service);
            }
        });
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
        let handles = self.resolve(name)?;
        let service = handles[0].inst.service.clone();
        Box::pin(self.start_dependencies(&service)).await?;
        self.wait_for_dependencies(&service, true).await?;
        if handles.len() == 1 && handles[0].inst.name != service {
            return handles[0].send(Control::Start).await;
        }
        self.start_instances(&service).await
    }

    async fn start_dependencies(self: &Arc<Self>, service: &str) -> Result<(), SuperviseError> {
        let Some(svc) = self.set().services.get(service).cloned() else {
            return Ok(());
        };
        for dep in svc.depends_on.keys() {
            let idle = self
                .set()
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
        let handles = self.resolve(name)?;
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
        let set = self.set();
        let max = set.depth.values().copied().max().unwrap_or(0);
        for level in (0..=max).rev() {
            let replies: Vec<_> = set
                .instances
                .iter()
                .filter(|h| set.depth.get(&h.inst.service).copied().unwrap_or(0) == level)
                .map(|h| h.send(Control::Stop))
                .collect();
            for r in replies {
                if let Err(e) = r.await {
                    tracing::warn!("{e}");
                }
            }
        }
    }

    /// Tells an instance that the kernel's log named one of its processes; `false` when
    /// no instance has that name.
    pub async fn kernel_finding(
        &self,
        instance: &str,
        finding: steward_explain::LiveFinding,
    ) -> bool {
        let set = self.set();
        let Some(h) = set.instances.iter().find(|h| h.inst.name == instance) else {
            return false;
        };
        h.tx.send(Control::KernelFinding(Box::new(finding)))
            .await
            .is_ok()
    }

    /// Forwards a signal (SIGHUP, say) to every running instance's process group.
    pub async fn signal_all(&self, sig: Signal) {
        for h in &self.set().instances {
            let _ = h.tx.send(Control::Signal(sig)).await;
        }
    }

    /// Changes at each state change of any instance (a start, an exit, a health verdict).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ctx.subscribe_changes()
    }

    pub fn status(&self) -> Vec<ServiceStatus> {
        let enforcement = self.ctx.cgroups.enforcement();
        self.set()
            .instances
            .iter()
            .map(|h| h.read(|s| s.snapshot(&h.inst, &h.service, &h.unit, enforcement)))
            .collect()
    }

    /// Applies a new config's services: those gone are stopped, new ones started, changed
    /// ones (settings or placement) stopped and started anew, the rest left running. The
    /// caller has checked the config as `up` would. Pipelines' replicas are not touched.
    pub async fn reload(
        self: &Arc<Self>,
        config: &Config,
        instances: Vec<Instance>,
    ) -> Result<ReloadReport, SuperviseError> {
        let old = self.set();
        let keeps_running = |s: &Service| s.pipeline.is_none();
        let mut new_services = supervised(config);
        new_services.retain(|_, s| keeps_running(s));
        // Pipelines' replicas stay as they are (their lease secrets were given at start).
        for (name, svc) in &old.services {
            if !keeps_running(svc) {
                new_services.insert(name.clone(), svc.clone());
            }
        }
        let mut new_instances: Vec<Arc<Instance>> = instances
            .into_iter()
            .map(Arc::new)
            .filter(|i| {
                new_services
                    .get(&i.service)
                    .is_some_and(|s| keeps_running(s))
            })
            .collect();
        new_instances.extend(
            old.instances
                .iter()
                .filter(|h| !keeps_running(&h.service))
                .map(|h| h.inst.clone()),
        );
        let changes = diff(
            &Side {
                services: side(&old.services),
                instances: old.instances.iter().map(|h| h.inst.as_ref()).collect(),
            },
            &Side {
                services: side(&new_services),
                instances: new_instances.iter().map(|i| i.as_ref()).collect(),
            },
        );
        // Stop what goes or changes: dependents first.
        let mut going: Vec<&String> = changes.removed.iter().chain(&changes.changed).collect();
        going.sort_by_key(|s| std::cmp::Reverse(old.depth.get(*s).copied().unwrap_or(0)));
        for name in going {
            self.stop(name).await?;
        }
        // The new set: the handles of what did not change, new ones for the rest.
        let mut handles = Vec::new();
        for inst in new_instances {
            let kept = changes.unchanged.contains(&inst.service)
                || !new_services
                    .get(&inst.service)
                    .is_some_and(|s| keeps_running(s));
            if kept {
                if let Some(h) = old.instances.iter().find(|h| h.inst.name == inst.name) {
                    handles.push(h.clone());
                    continue;
                }
            }
            if let Some(svc) = new_services.get(&inst.service).cloned() {
                handles.push(Handle::spawn(&self.ctx, inst, svc)?);
            }
        }
        let set = Arc::new(Set {
            instances: handles,
            depth: depths(&new_services),
            services: new_services,
        });
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = set;
        self.ctx.changed();
        for name in changes.added.iter().chain(&changes.changed) {
            self.spawn_starter(name);
        }
        Ok(ReloadReport {
            started: changes.added.into_iter().collect(),
            stopped: changes.removed.into_iter().collect(),
            restarted: changes.changed.into_iter().collect(),
            unchanged: changes.unchanged.into_iter().collect(),
            not_applied: Vec::new(),
        })
    }
}
