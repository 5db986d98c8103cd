//! The listener: bound at start (a port in use stops `up` before anything runs), served by
//! the shared server loop until the agent's shutdown.

use crate::{auth, health, AgentView};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
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
    tracing::info!("http on http://{}", config.listen);
    steward_net::serve(
        listener.listener,
        ServerOptions::default(),
        shutdown,
        move |req| {
            let (view, config) = (view.clone(), config.clone());
            async move { answer(&*view, &config, req) }
        },
    )
    .await;
}

fn answer(view: &dyn AgentView, config: &Http, req: Request<Incoming>) -> Reply {
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
        (_, "/health" | "/ready") => {
            json_reply(StatusCode::METHOD_NOT_ALLOWED, &json!({"error": "use GET"}))
        }
        (_, path) => json_reply(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no such endpoint: {path}; there are /health and /ready")}),
        ),
    }
}
