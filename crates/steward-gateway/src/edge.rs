//! The edge of the gateway: what every request meets before any backend does. Its head's
//! size, the API key, and the endpoints the gateway answers itself (`/health`,
//! `/v1/models`, `/metrics`); completions go on to [`crate::forward`].

use crate::forward::forward;
use crate::responses::{error, full, json, Body};
use crate::state::{GatewayState, UpstreamClient, COMPLETIONS};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::time::Instant;

/// The largest request head (line and headers) accepted.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

pub(crate) async fn handle(
    state: &GatewayState,
    client: &UpstreamClient,
    req: Request<Incoming>,
) -> Response<Body> {
    // Cheap copies (shared bytes), for the line of a refusal.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let resp = answer(state, client, req).await;
    // Answers the gateway gave itself (401, 404, 413, 431, …) are logged too; answers from
    // a backend have their own line in `forward`.
    if resp.status().is_client_error() {
        tracing::info!("gateway: {method} {}: {}", uri.path(), resp.status());
    }
    resp
}

async fn answer(
    state: &GatewayState,
    client: &UpstreamClient,
    req: Request<Incoming>,
) -> Response<Body> {
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
    let uri = req.uri().clone();
    let path = uri.path();
    // Health is open; metrics are open to loopback (a local scraper sends no key) and on
    // `metrics_listen`; everything else needs a key when keys are configured.
    let open = path == "/health" || (path == "/metrics" && from_loopback(&req));
    if !state.cfg.api_keys.is_empty() && !open && !authorized(state, &req) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "missing or wrong API key (Authorization: Bearer …)",
        );
    }
    match (req.method(), path) {
        (&Method::GET, "/metrics") => metrics(state),
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
            forward(state, client, req, path, received).await
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

/// `/metrics` in the OpenMetrics text format.
pub(crate) fn metrics(state: &GatewayState) -> Response<Body> {
    Response::builder()
        .header(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
        .body(full(state.metrics.encode()))
        .unwrap_or_else(|_| Response::new(full("")))
}

fn from_loopback(req: &Request<Incoming>) -> bool {
    req.extensions()
        .get::<steward_net::Peer>()
        .is_some_and(|p| p.0.ip().is_loopback())
}

fn authorized(state: &GatewayState, req: &Request<Incoming>) -> bool {
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant time per key: how long a refusal takes says nothing of a key's bytes.
    state.cfg.api_keys.iter().fold(false, |ok, k| {
        ok | constant_time_eq::constant_time_eq(k.as_bytes(), given.as_bytes())
    })
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
