//! Routing, failover and the pass-through of the chosen backend's answer.

use crate::body::ChannelBody;
use crate::errors::{error, full, sse_error, Body};
use crate::health::{Health, Probe};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use steward_config::{Backend, Gateway};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The gateway's configuration and its live state (requests in flight per backend).
pub struct GatewayState {
    cfg: Gateway,
    client: Client<HttpConnector, Full<Bytes>>,
    in_flight: HashMap<String, Arc<AtomicU32>>,
    health: HashMap<String, Arc<Health>>,
    budget: crate::budget::RetryBudget,
    metrics: crate::metrics::Metrics,
}

impl GatewayState {
    pub fn new(cfg: Gateway) -> Arc<Self> {
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
        let in_flight = cfg
            .routes
            .iter()
            .flat_map(|r| &r.backends)
            .map(|b| (b.url.clone(), Arc::new(AtomicU32::new(0))))
            .collect();
        let health = cfg
            .routes
            .iter()
            .flat_map(|r| &r.backends)
            .map(|b| (b.url.clone(), Arc::new(Health::default())))
            .collect();
        Arc::new(GatewayState {
            cfg,
            client,
            in_flight,
            health,
            budget: crate::budget::RetryBudget::new(0.2, 10, Duration::from_secs(10)),
            metrics: crate::metrics::Metrics::new(),
        })
    }

    fn health_of(&self, url: &str) -> Arc<Health> {
        self.health.get(url).cloned().unwrap_or_default()
    }

    /// Probes every backend's `/health` every `every`, until `shutdown`.
    pub async fn probe_loop(self: Arc<Self>, every: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            for (url, health) in &self.health {
                let req = Request::get(format!("{url}/health")).body(Full::new(Bytes::new()));
                let Ok(req) = req else { continue };
                let probe =
                    match tokio::time::timeout(Duration::from_secs(2), self.client.request(req))
                        .await
                    {
                        Ok(Ok(r)) if r.status().is_success() => Probe::Up,
                        Ok(Ok(r)) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                            Probe::Loading
                        }
                        // A server without /health is alive; passive ejection still guards it.
                        Ok(Ok(r)) if r.status() == StatusCode::NOT_FOUND => Probe::Up,
                        _ => Probe::Down,
                    };
                health.probed(probe);
                self.metrics
                    .backend_up
                    .get_or_create(&crate::metrics::BackendLabel {
                        backend: url.clone(),
                    })
                    .set(i64::from(health.routable()));
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
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
                // A client that sends its headers too slowly is cut off (slow loris).
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(64 * 1024)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// How often each backend's /health is probed.
const PROBE_EVERY: Duration = Duration::from_millis(500);

const COMPLETIONS: [&str; 3] = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"];

async fn handle(state: &GatewayState, req: Request<Incoming>) -> Response<Body> {
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
        (&Method::GET, "/health") => {
            // 200 only when every route has a backend to go to.
            let mut down = Vec::new();
            let mut ok = true;
            for r in &state.cfg.routes {
                let mut any = false;
                for b in &r.backends {
                    let h = state.health_of(&b.url);
                    if h.routable() {
                        any = true;
                    } else {
                        down.push(serde_json::json!({ "route": r.model, "backend": b.url, "state": h.describe() }));
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
        (&Method::POST, p) if COMPLETIONS.contains(&p) => forward(state, req, &path).await,
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

fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(v.to_string()))
        .unwrap_or_else(|_| Response::new(full("")))
}

async fn forward(state: &GatewayState, req: Request<Incoming>, path: &str) -> Response<Body> {
    let limit = state.cfg.max_body.bytes() as usize;
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!("the body is larger than max_body ({limit} bytes)"),
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
    let Some(model) = parsed
        .get("model")
        .and_then(|m| m.as_str())
        .map(str::to_string)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "the body has no \"model\"",
        );
    };
    let Some(route) = state.cfg.routes.iter().find(|r| r.model == model) else {
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
    let stream = parsed
        .get("stream")
        .and_then(|s| s.as_bool())
        .unwrap_or(false);
    let deadline = Instant::now()
        + route
            .backends
            .iter()
            .map(|b| b.timeouts.total.0)
            .max()
            .unwrap_or(Duration::from_secs(600));

    // By priority; within a priority, fewest requests in flight first.
    let mut order: Vec<&Backend> = route.backends.iter().collect();
    // Healthy backends first; an ejected or down one only when nothing else is left.
    order.sort_by_key(|b| {
        (
            !state.health_of(&b.url).routable(),
            b.priority,
            state
                .in_flight
                .get(&b.url)
                .map_or(0, |c| c.load(Ordering::Relaxed)),
        )
    });
    state.budget.request();
    let mut failures = Vec::new();
    let mut saturated = 0;
    for backend in order {
        let counter = state
            .in_flight
            .get(&backend.url)
            .cloned()
            .unwrap_or_default();
        if backend
            .max_concurrency
            .is_some_and(|m| counter.load(Ordering::Relaxed) >= m)
        {
            saturated += 1;
            continue;
        }
        if Instant::now() >= deadline {
            break;
        }
        // A retry (any try after the first) needs the budget's leave, so a failing
        // backend cannot double the load on the others.
        if !failures.is_empty() && !state.budget.allow_retry() {
            failures.push("retry budget spent (at most 20% of requests are retried)".into());
            break;
        }
        counter.fetch_add(1, Ordering::Relaxed);
        let out = try_backend(
            state,
            backend,
            path,
            &parsed,
            &body,
            stream,
            deadline,
            counter.clone(),
        )
        .await;
        match out {
            Ok(resp) => {
                state.health_of(&backend.url).success();
                state
                    .metrics
                    .requests
                    .get_or_create(&outcome(&model, &backend.url, "ok"))
                    .inc();
                if !failures.is_empty() {
                    state
                        .metrics
                        .failovers
                        .get_or_create(&crate::metrics::RouteLabel {
                            route: model.clone(),
                        })
                        .inc();
                }
                return resp;
            }
            Err(why) => {
                counter.fetch_sub(1, Ordering::Relaxed);
                let refused =
                    why.contains("Connection refused") || why.contains("tcp connect error");
                state.health_of(&backend.url).failure(refused);
                state
                    .metrics
                    .requests
                    .get_or_create(&outcome(&model, &backend.url, "failed_over"))
                    .inc();
                tracing::info!(
                    "gateway: {model} via {}: {why}; trying the next backend",
                    backend.url
                );
                failures.push(format!("{}: {why}", backend.url));
            }
        }
    }
    if failures.is_empty() && saturated > 0 {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("every backend of \"{model}\" is at max_concurrency"),
        );
        r.headers_mut()
            .insert("retry-after", hyper::header::HeaderValue::from_static("1"));
        return r;
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

/// One try. `Err` means "move on to the next backend": nothing reached the client.
#[allow(clippy::too_many_arguments)]
async fn try_backend(
    state: &GatewayState,
    backend: &Backend,
    path: &str,
    parsed: &serde_json::Value,
    body: &Bytes,
    stream: bool,
    deadline: Instant,
    counter: Arc<AtomicU32>,
) -> Result<Response<Body>, String> {
    let bytes = match &backend.model {
        Some(m) => {
            let mut v = parsed.clone();
            v["model"] = serde_json::Value::String(m.clone());
            Bytes::from(v.to_string())
        }
        None => body.clone(),
    };
    let req = Request::post(format!("{}{path}", backend.url))
        .header("content-type", "application/json")
        .body(Full::new(bytes))
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let head_by = deadline.min(started + backend.timeouts.first_byte.0);
    let resp = match tokio::time::timeout_at(head_by, state.client.request(req)).await {
        Err(_) => {
            return Err(format!(
                "no response head within {:?}",
                backend.timeouts.first_byte.0
            ))
        }
        Ok(Err(e)) => return Err(chain(&e)),
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    state
        .metrics
        .first_byte
        .get_or_create(&crate::metrics::RouteLabel {
            route: parsed["model"].as_str().unwrap_or("").to_string(),
        })
        .observe(started.elapsed().as_secs_f64());
    if status == StatusCode::TOO_MANY_REQUESTS {
        // Honour Retry-After: no request goes there before it has passed.
        let wait = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(Duration::from_secs(1), Duration::from_secs);
        state
            .health_of(&backend.url)
            .hold_off(wait.min(Duration::from_secs(300)));
        return Err(format!("answered {status} (retry after {wait:?})"));
    }
    if status.is_server_error() {
        return Err(format!("answered {status}"));
    }
    let content_type = resp.headers().get("content-type").cloned();
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let idle = backend.timeouts.idle.0;
    let url = backend.url.clone();
    tokio::spawn(async move {
        let mut upstream = resp.into_body();
        loop {
            let by = deadline.min(Instant::now() + idle);
            match tokio::time::timeout_at(by, upstream.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        if tx.send(data).await.is_err() {
                            break; // the client left: dropping `upstream` cancels the request
                        }
                    }
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    if stream {
                        let _ = tx
                            .send(sse_error(&format!("backend {url} failed mid-stream: {e}")))
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
        counter.fetch_sub(1, Ordering::Relaxed);
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

fn outcome(route: &str, backend: &str, outcome: &str) -> crate::metrics::Outcome {
    crate::metrics::Outcome {
        route: route.to_string(),
        backend: backend.to_string(),
        outcome: outcome.to_string(),
    }
}
