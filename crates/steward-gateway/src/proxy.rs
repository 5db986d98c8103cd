//! Routing, failover and the pass-through of the chosen backend's answer.

use crate::balance::{self, Candidate};
use crate::body::ChannelBody;
use crate::errors::{error, full, sse_error, Body};
use crate::health::{Health, Probe};
use crate::metrics::{BackendMetrics, Metrics, RouteMetrics, UrlMetrics};
use crate::services::ServiceStates;
use crate::slots::{InFlight, Slot, Waiting};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;
use steward_config::{Backend, Gateway, Route};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

/// One backend URL, shared by every route that names it: its health and its load.
struct Upstream {
    url: String,
    service: Option<String>,
    health: Health,
    in_flight: Arc<InFlight>,
    metrics: UrlMetrics,
}

struct RouteState {
    waiting: AtomicU32,
    metrics: RouteMetrics,
    /// In the order of the route's backends.
    backends: Vec<(Arc<Upstream>, BackendMetrics)>,
}

/// The gateway's configuration and its live state.
pub struct GatewayState {
    cfg: Gateway,
    client: Client<HttpConnector, Full<Bytes>>,
    upstreams: Vec<Arc<Upstream>>,
    routes: Vec<RouteState>,
    /// Notified whenever any slot is freed: wakes the requests waiting in a route's queue.
    slot_freed: Arc<Notify>,
    budget: crate::budget::RetryBudget,
    metrics: Metrics,
    services: Option<Arc<dyn ServiceStates>>,
}

impl GatewayState {
    /// A gateway whose backends are all probed over HTTP (`steward gateway` alone).
    pub fn new(cfg: Gateway) -> Arc<Self> {
        Self::build(cfg, None)
    }

    /// A gateway inside the agent: backends that are services take their health from
    /// `services` (the supervisor).
    pub fn with_services(cfg: Gateway, services: Arc<dyn ServiceStates>) -> Arc<Self> {
        Self::build(cfg, Some(services))
    }

    fn build(cfg: Gateway, services: Option<Arc<dyn ServiceStates>>) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        // The shortest connect timeout of any backend; per-backend ones are applied per try.
        let connect = cfg
            .routes
            .iter()
            .flat_map(|r| &r.backends)
            .map(|b| b.timeouts.connect.0)
            .min();
        connector.set_connect_timeout(connect);
        connector.set_nodelay(true);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        let metrics = Metrics::new();
        let mut by_url: HashMap<String, Arc<Upstream>> = HashMap::new();
        let mut upstreams = Vec::new();
        let routes = cfg
            .routes
            .iter()
            .map(|r| RouteState {
                waiting: AtomicU32::new(0),
                metrics: metrics.route(&r.model),
                backends: r
                    .backends
                    .iter()
                    .map(|b| {
                        let up = by_url
                            .entry(b.url.clone())
                            .or_insert_with(|| {
                                let m = metrics.url(&b.url);
                                m.up.set(1);
                                let u = Arc::new(Upstream {
                                    url: b.url.clone(),
                                    service: b.service.clone(),
                                    health: Health::default(),
                                    in_flight: Arc::new(InFlight::with_gauge(m.in_flight.clone())),
                                    metrics: m,
                                });
                                upstreams.push(u.clone());
                                u
                            })
                            .clone();
                        (up, metrics.backend(&r.model, &b.url))
                    })
                    .collect(),
            })
            .collect();
        let b = cfg.retry_budget;
        Arc::new(GatewayState {
            budget: crate::budget::RetryBudget::new(b.ratio, b.min_retries, b.window.0),
            cfg,
            client,
            upstreams,
            routes,
            slot_freed: Arc::new(Notify::new()),
            metrics,
            services,
        })
    }

    /// Checks every backend every `every`, until `shutdown`: a service backend by asking
    /// the supervisor, a URL by `GET /health`, all at once so one hung backend delays none.
    pub async fn probe_loop(self: Arc<Self>, every: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            let mut probes = tokio::task::JoinSet::new();
            for up in &self.upstreams {
                let (up, me) = (up.clone(), self.clone());
                probes.spawn(async move {
                    let (probe, note) = me.probe(&up).await;
                    up.health.probed(probe, note);
                    up.metrics.up.set(i64::from(up.health.routable()));
                });
            }
            while probes.join_next().await.is_some() {}
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn probe(&self, up: &Upstream) -> (Probe, Option<String>) {
        if let (Some(service), Some(states)) = (&up.service, &self.services) {
            return match states.ready(service) {
                Ok(()) => (Probe::Up, None),
                Err(why) => (Probe::Down, Some(format!("service {service}: {why}"))),
            };
        }
        let req = Request::get(format!("{}/health", up.url)).body(Full::new(Bytes::new()));
        let Ok(req) = req else {
            return (Probe::Down, None);
        };
        match tokio::time::timeout(Duration::from_secs(2), self.client.request(req)).await {
            Ok(Ok(r)) if r.status().is_success() => (Probe::Up, None),
            Ok(Ok(r)) if r.status() == StatusCode::SERVICE_UNAVAILABLE => (Probe::Loading, None),
            // A server without /health is alive; passive ejection still guards it.
            Ok(Ok(r)) if r.status() == StatusCode::NOT_FOUND => (Probe::Up, None),
            Ok(Ok(r)) => (
                Probe::Down,
                Some(format!("/health answered {}", r.status())),
            ),
            Ok(Err(e)) => (Probe::Down, Some(chain(&e))),
            Err(_) => (Probe::Down, Some("/health did not answer within 2s".into())),
        }
    }
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    state: Arc<GatewayState>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(state.clone().probe_loop(PROBE_EVERY, shutdown.clone()));
    let client_timeout = state.cfg.client_timeout.0;
    loop {
        let stream = tokio::select! {
            a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
            _ = shutdown.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                // A client that sends its headers too slowly is cut off (slow loris);
                // headers over 64 KiB are answered 431.
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(client_timeout)
                .max_buf_size(MAX_HEAD)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The largest request head (line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;

/// How often each backend's health is checked.
const PROBE_EVERY: Duration = Duration::from_millis(500);

const COMPLETIONS: [&str; 3] = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"];

async fn handle(state: &GatewayState, req: Request<Incoming>) -> Response<Body> {
    let received = Instant::now();
    // hyper's buffer limit alone lets a head through when it arrives in one read.
    let head_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if head_bytes > MAX_HEAD {
        return error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "invalid_request_error",
            format!(
                "the request's headers are larger than {} KiB",
                MAX_HEAD / 1024
            ),
        );
    }
    let path = req.uri().path().to_string();
    if !state.cfg.api_keys.is_empty() && path != "/health" {
        let given = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !state.cfg.api_keys.iter().any(|k| k == given) {
            return error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "missing or wrong API key (Authorization: Bearer …)",
            );
        }
    }
    match (req.method(), path.as_str()) {
        (&Method::GET, "/metrics") => Response::builder()
            .header(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
            .body(full(state.metrics.encode()))
            .unwrap_or_else(|_| Response::new(full(""))),
        (&Method::GET, "/v1/models") => {
            let data: Vec<_> = state
                .cfg
                .routes
                .iter()
                .map(|r| serde_json::json!({ "id": r.model, "object": "model", "owned_by": "steward" }))
                .collect();
            json(
                StatusCode::OK,
                serde_json::json!({ "object": "list", "data": data }),
            )
        }
        (&Method::GET, "/health") => health(state),
        (&Method::POST, p) if COMPLETIONS.contains(&p) => {
            forward(state, req, &path, received).await
        }
        (_, p) if COMPLETIONS.contains(&p) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            format!("{p} takes POST"),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("no endpoint {path}"),
        ),
    }
}

/// 200 only when every route has a backend to go to; the body names those that are down.
fn health(state: &GatewayState) -> Response<Body> {
    let mut down = Vec::new();
    let mut ok = true;
    for (r, rs) in state.cfg.routes.iter().zip(&state.routes) {
        let mut any = false;
        for (b, (up, _)) in r.backends.iter().zip(&rs.backends) {
            if up.health.routable() {
                any = true;
            } else {
                down.push(serde_json::json!({
                    "route": r.model,
                    "backend": b.url,
                    "service": b.service,
                    "state": up.health.describe(),
                }));
            }
        }
        ok &= any;
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        status,
        serde_json::json!({ "status": if ok { "ok" } else { "degraded" }, "down": down }),
    )
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(v.to_string()))
        .unwrap_or_else(|_| Response::new(full("")))
}

/// 503 with Retry-After: the route is full, ask again shortly.
fn overloaded(route: &Route, rs: &RouteState, why: &str) -> Response<Body> {
    rs.metrics.overloaded.inc();
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        format!(
            "every backend of \"{}\" is at its max_concurrency and {why}",
            route.model
        ),
    );
    r.headers_mut()
        .insert("retry-after", hyper::header::HeaderValue::from_static("1"));
    r
}

/// The pause before round `round` (1, 2, …): `base` doubling each round, with the upper
/// half randomised so that requests that failed together do not come back together.
fn round_backoff(base: Duration, round: u32) -> Duration {
    let full = base.saturating_mul(1 << (round - 1).min(16));
    full / 2 + full.mul_f64(fastrand::f64() / 2.0)
}

async fn forward(
    state: &GatewayState,
    req: Request<Incoming>,
    path: &str,
    received: Instant,
) -> Response<Body> {
    let limit = state.cfg.max_body.bytes() as usize;
    let read_by = received + state.cfg.client_timeout.0;
    let body = match tokio::time::timeout_at(
        read_by,
        Limited::new(req.into_body(), limit).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!("the body is larger than max_body ({limit} bytes)"),
            )
        }
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                format!(
                    "the body did not arrive within client_timeout ({:?})",
                    state.cfg.client_timeout.0
                ),
            )
        }
    };
    let parsed: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("the body is not JSON: {e}"),
            )
        }
    };
    let Some(model) = parsed.get("model").and_then(|m| m.as_str()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "the body has no \"model\"",
        );
    };
    let Some(ri) = state.cfg.routes.iter().position(|r| r.model == model) else {
        let known: Vec<&str> = state.cfg.routes.iter().map(|r| r.model.as_str()).collect();
        return error(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "no route for model \"{model}\"; routes: {}",
                known.join(", ")
            ),
        );
    };
    let (route, rs) = (&state.cfg.routes[ri], &state.routes[ri]);
    let stream = parsed
        .get("stream")
        .and_then(|s| s.as_bool())
        .unwrap_or(false);
    let deadline = received + route.total();
    let queue_by = (received + route.queue_timeout.0).min(deadline);
    let req = Outgoing {
        path,
        parsed: &parsed,
        body: &body,
        stream,
        received,
        deadline,
    };

    state.budget.request();
    let mut attempts = 0u32;
    let mut failures: Vec<String> = Vec::new();
    // Time spent on backends, in the queue and backing off: not the gateway's overhead.
    let mut elsewhere = Duration::ZERO;
    let mut round = 0;
    'rounds: while round < route.retries.rounds {
        if round > 0 {
            let pause = Instant::now();
            let until = (pause + round_backoff(route.retries.backoff.0, round)).min(deadline);
            tokio::time::sleep_until(until).await;
            elapsed_into(&mut elsewhere, pause);
        }
        // Armed before the backends are looked at, so a slot freed meanwhile is not missed.
        let freed = state.slot_freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        let candidates: Vec<Candidate> = route
            .backends
            .iter()
            .zip(&rs.backends)
            .map(|(b, (up, _))| Candidate {
                routable: up.health.routable(),
                priority: b.priority,
                in_flight: up.in_flight.get(),
                weight: b.weight,
            })
            .collect();
        let mut tried = false;
        for bi in balance::order(&candidates, fastrand::f64) {
            let (backend, (up, bm)) = (&route.backends[bi], &rs.backends[bi]);
            if Instant::now() >= deadline {
                break 'rounds;
            }
            let Some(slot) = up
                .in_flight
                .try_acquire(backend.max_concurrency, &state.slot_freed)
            else {
                continue; // full: the next one
            };
            // A retry (any try after the first) needs the budget's leave, so a failing
            // backend cannot multiply the load on the others.
            if attempts > 0 && !state.budget.allow_retry() {
                rs.metrics.budget_refusals.inc();
                failures.push(format!(
                    "retry budget spent (retries are capped at {}% of requests)",
                    state.cfg.retry_budget.ratio * 100.0
                ));
                break 'rounds;
            }
            attempts += 1;
            tried = true;
            let began = Instant::now();
            match try_backend(state, rs, backend, up, &req, slot).await {
                Ok(resp) => {
                    up.health.success();
                    bm.ok.inc();
                    if attempts > 1 {
                        rs.metrics.failovers.inc();
                    }
                    let head = began.elapsed();
                    rs.metrics.first_byte.observe(head.as_secs_f64());
                    elsewhere += head;
                    rs.metrics
                        .overhead
                        .observe(received.elapsed().saturating_sub(elsewhere).as_secs_f64());
                    tracing::info!(
                        "gateway: {model} -> {}: {} after {attempts} {}, first byte in {:.1} ms",
                        backend.url,
                        resp.status().as_u16(),
                        if attempts == 1 { "try" } else { "tries" },
                        head.as_secs_f64() * 1000.0
                    );
                    return resp;
                }
                Err(why) => {
                    elapsed_into(&mut elsewhere, began);
                    let refused =
                        why.contains("Connection refused") || why.contains("tcp connect error");
                    if up.health.failure(refused) {
                        up.metrics.ejections.inc();
                        up.metrics.up.set(0);
                    }
                    bm.failed_over.inc();
                    tracing::info!(
                        "gateway: {model} via {}: {why}; trying the next backend",
                        backend.url
                    );
                    failures.push(format!("{}: {why}", backend.url));
                }
            }
        }
        if !tried {
            // Every backend is full: wait in the route's queue for a slot, then look again.
            let Some(_place) =
                Waiting::enter(&rs.waiting, &rs.metrics.queue_depth, route.max_queue)
            else {
                return overloaded(
                    route,
                    rs,
                    &format!("{} requests already wait", route.max_queue),
                );
            };
            let began = Instant::now();
            tokio::select! {
                _ = freed => {}
                _ = tokio::time::sleep_until(queue_by) => {
                    return overloaded(route, rs, &format!("no slot freed within queue_timeout ({:?})", route.queue_timeout.0));
                }
            }
            elapsed_into(&mut elsewhere, began);
            continue;
        }
        round += 1;
    }
    rs.metrics.exhausted.inc();
    tracing::info!(
        "gateway: {model}: failed after {attempts} tries: {}",
        failures.join("; ")
    );
    if Instant::now() >= deadline {
        return error(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "no backend of \"{model}\" answered within total ({:?}): {}",
                route.total(),
                failures.join("; ")
            ),
        );
    }
    error(
        StatusCode::BAD_GATEWAY,
        "upstream_error",
        format!(
            "no backend of \"{model}\" answered: {}",
            failures.join("; ")
        ),
    )
}

fn elapsed_into(acc: &mut Duration, since: Instant) {
    *acc += since.elapsed();
}

/// What every try of one request sends.
struct Outgoing<'a> {
    path: &'a str,
    parsed: &'a serde_json::Value,
    body: &'a Bytes,
    stream: bool,
    received: Instant,
    deadline: Instant,
}

/// Whether an SSE chunk holds a data event (not only `: ping` comments).
fn has_data_event(chunk: &[u8]) -> bool {
    chunk.starts_with(b"data:") || chunk.windows(6).any(|w| w == b"\ndata:")
}

/// One try. `Err` means "move on to the next backend": nothing reached the client.
async fn try_backend(
    state: &GatewayState,
    rs: &RouteState,
    backend: &Backend,
    up: &Upstream,
    out: &Outgoing<'_>,
    slot: Slot,
) -> Result<Response<Body>, String> {
    let bytes = match &backend.model {
        Some(m) => {
            let mut v = out.parsed.clone();
            v["model"] = serde_json::Value::String(m.clone());
            Bytes::from(v.to_string())
        }
        None => out.body.clone(),
    };
    let req = Request::post(format!("{}{}", backend.url, out.path))
        .header("content-type", "application/json")
        .body(Full::new(bytes))
        .map_err(|e| e.to_string())?;
    let first_byte = backend.timeouts.first_byte.0;
    let head_by = out.deadline.min(Instant::now() + first_byte);
    let resp = match tokio::time::timeout_at(head_by, state.client.request(req)).await {
        Err(_) => return Err(format!("no response head within {first_byte:?}")),
        Ok(Err(e)) => return Err(chain(&e)),
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        // Honour Retry-After: no request goes there before it has passed.
        let wait = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(Duration::from_secs(1), Duration::from_secs);
        up.health.hold_off(wait.min(Duration::from_secs(300)));
        return Err(format!("answered {status} (retry after {wait:?})"));
    }
    if status.is_server_error() {
        return Err(format!("answered {status}"));
    }
    let content_type = resp.headers().get("content-type").cloned();
    let is_sse = content_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut upstream = resp.into_body();
    if !out.stream && status.is_success() {
        return whole_json(backend, rs, out, upstream, status, content_type, slot).await;
    }
    // A stream's first byte is its first data event: until one comes, nothing has gone to
    // the client and the request can still move on. `: ping` comments before it are kept.
    let mut early = Vec::new();
    if out.stream && is_sse {
        loop {
            match tokio::time::timeout_at(head_by, upstream.frame()).await {
                Err(_) => return Err(format!("no data event within {first_byte:?}")),
                Ok(Some(Err(e))) => {
                    return Err(format!(
                        "the stream broke before its first event: {}",
                        chain(&e)
                    ))
                }
                Ok(None) => break,
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        let data_event = has_data_event(&data);
                        early.push(data);
                        if data_event {
                            break;
                        }
                    }
                }
            }
        }
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let idle = backend.timeouts.idle.0;
    let (url, stream, deadline) = (backend.url.clone(), out.stream, out.deadline);
    let (received, total) = (out.received, rs.metrics.total.clone());
    tokio::spawn(async move {
        let _slot = slot; // held until the body has been passed on
        for chunk in early {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
        loop {
            let by = deadline.min(Instant::now() + idle);
            match tokio::time::timeout_at(by, upstream.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        if tx.send(data).await.is_err() {
                            return; // the client left: dropping `upstream` cancels the request
                        }
                    }
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    if stream {
                        let _ = tx
                            .send(sse_error(&format!(
                                "backend {url} failed mid-stream: {}",
                                chain(&e)
                            )))
                            .await;
                    }
                    break;
                }
                Err(_) => {
                    if stream {
                        let _ = tx.send(sse_error(&format!("backend {url} sent nothing for {idle:?} (idle timeout) or the total timeout passed"))).await;
                    }
                    break;
                }
            }
        }
        total.observe(received.elapsed().as_secs_f64());
    });
    let mut builder = Response::builder()
        .status(status)
        .header("x-steward-backend", backend.url.as_str());
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    builder
        .body(ChannelBody(rx).boxed())
        .map_err(|e| e.to_string())
}

/// Largest answer buffered whole (a non-streaming completion or a batch of embeddings).
const MAX_ANSWER: usize = 256 << 20;

/// A non-streaming answer, read whole (within `idle` between chunks and `total`) and
/// checked to be JSON before any of it goes to the client: a backend that answers garbage
/// fails over like one that answers 5xx, instead of handing the garbage on.
async fn whole_json(
    backend: &Backend,
    rs: &RouteState,
    out: &Outgoing<'_>,
    mut upstream: Incoming,
    status: StatusCode,
    content_type: Option<hyper::header::HeaderValue>,
    slot: Slot,
) -> Result<Response<Body>, String> {
    let idle = backend.timeouts.idle.0;
    let mut bytes = Vec::new();
    loop {
        let by = out.deadline.min(Instant::now() + idle);
        match tokio::time::timeout_at(by, upstream.frame()).await {
            Err(_) => {
                return Err(format!(
                    "its answer stalled for {idle:?} (idle timeout) or ran past total"
                ))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(format!("its answer broke off: {}", chain(&e))),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if bytes.len() + data.len() > MAX_ANSWER {
                        return Err(format!("its answer is larger than {MAX_ANSWER} bytes"));
                    }
                    bytes.extend_from_slice(&data);
                }
            }
        }
    }
    drop(slot);
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        let start = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
        return Err(format!(
            "answered {status} with a body that is not JSON ({e}): {start:?}"
        ));
    }
    rs.metrics
        .total
        .observe(out.received.elapsed().as_secs_f64());
    let mut builder = Response::builder()
        .status(status)
        .header("x-steward-backend", backend.url.as_str());
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    builder.body(full(bytes)).map_err(|e| e.to_string())
}

/// An error and its causes on one line ("client error (Connect): tcp connect error: …").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_back_off_exponentially_with_jitter() {
        let base = Duration::from_millis(100);
        for _ in 0..100 {
            let first = round_backoff(base, 1);
            let third = round_backoff(base, 3);
            assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first));
            assert!((Duration::from_millis(200)..=Duration::from_millis(400)).contains(&third));
        }
    }

    #[test]
    fn only_data_lines_count_as_a_streams_first_byte() {
        assert!(!has_data_event(b": ping\n\n"));
        assert!(has_data_event(b"data: {}\n\n"));
        assert!(has_data_event(b": ping\n\ndata: {}\n\n"));
    }
}
