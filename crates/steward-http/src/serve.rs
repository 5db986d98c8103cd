//! The listener: bound at start (a port in use stops `up` before anything runs), served by
//! the shared server loop until the agent's shutdown.

use crate::{auth, health, metrics, AgentView};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::body::Incoming;
use hyper::Response;
use hyper::{Method, Request, StatusCode};
use prometheus_client::registry::Registry;
use serde_json::json;
use std::sync::Arc;
use steward_config::Http;
use steward_net::{json_reply, Reply, ServerOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub struct HttpListener {
    listener: TcpListener,
    config: Http,
}

impl HttpListener {
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.local_addr().ok()
    }
}

/// Binds `[http] listen`, naming it when that fails.
pub async fn bind(config: &Http) -> Result<HttpListener, String> {
    let listener = TcpListener::bind(config.listen).await.map_err(|e| {
        format!(
            "[http] listen: cannot listen on {}: {e}; is another agent or program on it? Choose another port in [http] listen",
            config.listen
        )
    })?;
    Ok(HttpListener {
        listener,
        config: config.clone(),
    })
}

/// Serves until `shutdown`.
pub async fn serve(
    listener: HttpListener,
    view: Arc<dyn AgentView>,
    shutdown: watch::Receiver<bool>,
) {
    let config = Arc::new(listener.config);
    let registry = Arc::new(metrics::registry(view.clone()));
    tracing::info!("http on http://{}", config.listen);
    steward_net::serve(
        listener.listener,
        ServerOptions::default(),
        shutdown,
        move |req| {
            let (view, config, registry) = (view.clone(), config.clone(), registry.clone());
            async move { answer(&*view, &config, &registry, req) }
        },
    )
    .await;
}

fn answer(
    view: &dyn AgentView,
    config: &Http,
    registry: &Registry,
    req: Request<Incoming>,
) -> Reply {
    if !auth::authorized(req.headers(), config.token.as_ref()) {
        let mut reply = json_reply(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "missing or wrong token: send Authorization: Bearer <[http] token>"}),
        );
        reply.headers_mut().insert(
            "www-authenticate",
            hyper::header::HeaderValue::from_static("Bearer"),
        );
        return reply;
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/health" | "/ready") => {
            let (status, body) = health::health_reply(&view.services());
            json_reply(status, &body)
        }
        (&Method::GET | &Method::HEAD, "/metrics") => metrics_reply(registry, &req),
        (_, "/health" | "/ready" | "/metrics") => {
            json_reply(StatusCode::METHOD_NOT_ALLOWED, &json!({"error": "use GET"}))
        }
        (_, path) => json_reply(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no such endpoint: {path}; there are /health, /ready and /metrics")}),
        ),
    }
}

/// `/metrics` in OpenMetrics when the scraper asks for it (Prometheus does), else in the
/// classic text format.
fn metrics_reply(registry: &Registry, req: &Request<Incoming>) -> Reply {
    let openmetrics = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let text = metrics::encode(registry);
    let (content_type, body) = if openmetrics {
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            text,
        )
    } else {
        (
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::classic(&text),
        )
    };
    Response::builder()
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
