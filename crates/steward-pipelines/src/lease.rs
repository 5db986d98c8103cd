//! Lease mode: long-running workers (a model loaded once) pull jobs over HTTP on
//! 127.0.0.1. steward knows which replica holds which lease: a job that outlives its
//! `timeout` gets its replica restarted (`TimedOut`); a replica that dies while holding a
//! lease fails the job with the way it died, and the job goes to another replica; a
//! worker that stops heartbeating loses the lease (`LeaseExpired`).
//!
//! Endpoints (all POST; the worker names itself in `X-Steward-Worker`, which the client
//! takes from `STEWARD_SERVICE`):
//! - `/v1/queues/{queue}/lease?wait=30s`: a job as JSON, or 204 after `wait`;
//! - `/v1/jobs/{id}/heartbeat`, `/progress` (`{"progress": 0.5, "message": "…"}`),
//!   `/complete`, `/fail` (`{"error": "…"}`).

use crate::PipelineRunner;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use steward_events::ExitClass;
use steward_queue::{now_ms, Failure, JobFilter, JobState, JobStore, SqliteStore};
use steward_supervise::Supervisor;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

/// A lease lives this long without a heartbeat.
pub const LEASE_TTL_MS: i64 = 30_000;
/// The longest long-poll a worker may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);

pub struct LeaseBroker {
    store: Arc<SqliteStore>,
    supervisor: Arc<Supervisor>,
    /// Lease-mode pipelines by queue.
    runners: BTreeMap<String, Arc<PipelineRunner>>,
    owner_prefix: String,
    /// Woken when a job may have become available.
    wake: Notify,
}

impl LeaseBroker {
    pub fn new(
        store: Arc<SqliteStore>,
        supervisor: Arc<Supervisor>,
        runners: Vec<Arc<PipelineRunner>>,
        owner_prefix: String,
    ) -> Arc<Self> {
        Arc::new(LeaseBroker {
            store,
            supervisor,
            runners: runners
                .into_iter()
                .map(|r| (r.pipeline.queue.clone(), r))
                .collect(),
            owner_prefix,
            wake: Notify::new(),
        })
    }

    fn runner_of_instance(&self, instance: &str) -> Option<&Arc<PipelineRunner>> {
        self.runners
            .values()
            .find(|r| r.instances.iter().any(|i| i.name == instance))
    }

    /// Serves the API on `listener` and watches leases until `shutdown`.
    pub async fn run(self: Arc<Self>, listener: TcpListener, shutdown: watch::Receiver<bool>) {
        let watcher = tokio::spawn(self.clone().watch_leases(shutdown.clone()));
        let mut shutdown = shutdown;
        loop {
            let stream = tokio::select! {
                a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
                _ = shutdown.changed() => break,
            };
            let me = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let me = me.clone();
                    async move { Ok::<_, Infallible>(me.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
        watcher.abort();
    }

    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::POST {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                serde_json::json!({"error": "use POST"}),
            );
        }
        let Some(worker) = req
            .headers()
            .get("x-steward-worker")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
        else {
            return reply(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "missing X-Steward-Worker header (the worker's STEWARD_SERVICE)"}),
            );
        };
        let owner = format!("{}{worker}", self.owner_prefix);
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match parts.as_slice() {
            ["v1", "queues", queue, "lease"] => self.lease(queue, &owner, &query).await,
            ["v1", "jobs", id, action] => match id.parse::<i64>() {
                Ok(id) => self.job_action(id, action, &owner, &body).await,
                Err(_) => reply(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": format!("{id} is not a job id")}),
                ),
            },
            _ => reply(
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": format!("no such endpoint: {path}")}),
            ),
        }
    }

    async fn lease(&self, queue: &str, owner: &str, query: &str) -> Response<Full<Bytes>> {
        let wait = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("wait="))
            .and_then(|w| humantime::parse_duration(w).ok())
            .unwrap_or(Duration::ZERO)
            .min(MAX_WAIT);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (store, q, o) = (self.store.clone(), queue.to_string(), owner.to_string());
            match tokio::task::spawn_blocking(move || store.lease(&q, &o, LEASE_TTL_MS)).await {
                Ok(Ok(Some(job))) => {
                    return reply(
                        StatusCode::OK,
                        serde_json::json!({
                            "id": job.id,
                            "attempt": job.attempts,
                            "input": job.input(),
                            "payload": job.payload,
                            "lease_ttl_ms": LEASE_TTL_MS,
                        }),
                    )
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    return reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        serde_json::json!({"error": e.to_string()}),
                    )
                }
                Err(_) => {
                    return reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        serde_json::json!({"error": "shutting down"}),
                    )
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .body(Full::new(Bytes::new()))
                    .unwrap_or_default();
            }
            // A retry's backoff or a new enqueue can make a job ready without a wake-up.
            let _ = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(200)),
                self.wake.notified(),
            )
            .await;
        }
    }

    async fn job_action(
        &self,
        id: i64,
        action: &str,
        owner: &str,
        body: &[u8],
    ) -> Response<Full<Bytes>> {
        let json: serde_json::Value =
            serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
        let store = self.store.clone();
        let o = owner.to_string();
        let held = match action {
            "heartbeat" => {
                tokio::task::spawn_blocking(move || store.heartbeat(id, &o, LEASE_TTL_MS)).await
            }
            "progress" => {
                let value = json["progress"].as_f64().unwrap_or(0.0);
                let message = json["message"].as_str().map(str::to_string);
                tokio::task::spawn_blocking(move || store.progress(id, &o, value, message)).await
            }
            "complete" => {
                let r = tokio::task::spawn_blocking(move || store.complete(id, &o)).await;
                if let Some(runner) = self.runner_of_owner(owner) {
                    runner
                        .last_completion
                        .store(now_ms(), std::sync::atomic::Ordering::Relaxed);
                }
                r
            }
            "fail" => {
                let error = json["error"]
                    .as_str()
                    .unwrap_or("the worker reported a failure")
                    .to_string();
                return match self.store.get(id) {
                    Ok(Some((job, _))) if job.lease_owner.as_deref() == Some(owner) => {
                        let runner = self.runners.get(&job.queue).cloned();
                        let failure = Failure {
                            class: ExitClass::Reported {
                                error: error.clone(),
                            },
                            error,
                            stderr_tail: None,
                        };
                        match runner {
                            Some(r) => r.finish(owner, &job, Err(failure), false).await,
                            None => {
                                let _ = self.store.fail(
                                    id,
                                    owner,
                                    failure,
                                    &steward_config::Backoff::default(),
                                );
                            }
                        }
                        self.wake.notify_waiters();
                        reply(StatusCode::OK, serde_json::json!({"ok": true}))
                    }
                    _ => reply(
                        StatusCode::CONFLICT,
                        serde_json::json!({"error": "this worker does not hold that job's lease"}),
                    ),
                };
            }
            other => {
                return reply(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"error": format!("no action {other:?}; use heartbeat, progress, complete or fail")}),
                )
            }
        };
        match held {
            Ok(Ok(true)) => reply(StatusCode::OK, serde_json::json!({"ok": true})),
            Ok(Ok(false)) => reply(
                StatusCode::CONFLICT,
                serde_json::json!({"error": "this worker does not hold that job's lease (it expired or was taken back)"}),
            ),
            Ok(Err(e)) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"error": e.to_string()}),
            ),
            Err(_) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"error": "shutting down"}),
            ),
        }
    }

    fn runner_of_owner(&self, owner: &str) -> Option<&Arc<PipelineRunner>> {
        self.runner_of_instance(owner.strip_prefix(&self.owner_prefix).unwrap_or(owner))
    }

    /// Jobs held by `instance` right now.
    fn held_by(&self, instance: &str) -> Vec<steward_queue::Job> {
        let owner = format!("{}{instance}", self.owner_prefix);
        self.store
            .list(&JobFilter {
                queue: None,
                state: Some(JobState::Running),
                limit: None,
            })
            .unwrap_or_default()
            .into_iter()
            .filter(|j| j.lease_owner.as_deref() == Some(owner.as_str()))
            .collect()
    }

    /// Replica deaths, job timeouts and expired leases.
    async fn watch_leases(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut exits = self.supervisor.context().subscribe_exits();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                exit = exits.recv() => {
                    let Ok(exit) = exit else { continue };
                    // Our own stops (shutdown, restarts) leave leases to the timeout path
                    // or the next agent's rescue.
                    if matches!(exit.class, ExitClass::Stopped) {
                        continue;
                    }
                    let Some(runner) = self.runner_of_instance(&exit.instance).cloned() else { continue };
                    for job in self.held_by(&exit.instance) {
                        let owner = format!("{}{}", self.owner_prefix, exit.instance);
                        let failure = Failure {
                            class: exit.class.clone(),
                            error: format!("{} died holding it: {}", exit.instance, exit.class),
                            stderr_tail: None,
                        };
                        runner.finish(&owner, &job, Err(failure), false).await;
                    }
                    self.wake.notify_waiters();
                }
                _ = tick.tick() => self.check_timeouts().await,
            }
        }
    }

    async fn check_timeouts(&self) {
        let now = now_ms();
        for runner in self.runners.values() {
            let limit = runner.pipeline.timeout.0.as_millis() as i64;
            let running = self
                .store
                .list(&JobFilter {
                    queue: Some(runner.pipeline.queue.clone()),
                    state: Some(JobState::Running),
                    limit: None,
                })
                .unwrap_or_default();
            for job in running {
                let Some(owner) = job.lease_owner.clone() else {
                    continue;
                };
                let expired = job.lease_expires_at.is_some_and(|t| t < now);
                let timed_out = job.started_at.is_some_and(|t| now - t > limit);
                if !(expired || timed_out) {
                    continue;
                }
                let class = if timed_out {
                    ExitClass::TimedOut
                } else {
                    ExitClass::LeaseExpired
                };
                let failure = Failure {
                    class: class.clone(),
                    error: class.to_string(),
                    stderr_tail: None,
                };
                runner.finish(&owner, &job, Err(failure), false).await;
                if timed_out {
                    // The worker is stuck in this job: restart its replica.
                    let instance = owner
                        .strip_prefix(&self.owner_prefix)
                        .unwrap_or(&owner)
                        .to_string();
                    let sup = self.supervisor.clone();
                    tokio::spawn(async move {
                        if let Err(e) = sup.restart(&instance).await {
                            tracing::warn!("cannot restart {instance} after a job timeout: {e}");
                        }
                    });
                }
                self.wake.notify_waiters();
            }
        }
    }
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}
