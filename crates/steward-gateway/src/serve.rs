//! The gateway's listener: steward's one server loop, with the gateway's limits on request
//! heads, and its probes running beside it until shutdown.

use crate::edge::{handle, metrics, MAX_HEAD};
use crate::probe::{probe_loop, PROBE_EVERY};
use crate::state::GatewayState;
use std::sync::Arc;
use steward_net::ServerOptions;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves until `shutdown` turns true, then drains the connections still open.
pub async fn serve(
    listener: TcpListener,
    state: Arc<GatewayState>,
    shutdown: watch::Receiver<bool>,
) {
    let probes = tokio::spawn(probe_loop(state.clone(), PROBE_EVERY, shutdown.clone()));
    let options = ServerOptions {
        // A client that sends its headers too slowly is cut off (slow loris); headers over
        // 64 KiB are answered 431.
        header_read_timeout: state.cfg.client_timeout.0,
        max_head: MAX_HEAD,
        ..ServerOptions::default()
    };
    steward_net::serve(listener, options, shutdown, move |req| {
        let state = state.clone();
        async move { handle(&state, req).await }
    })
    .await;
    let _ = probes.await;
}

/// `/metrics` alone, without an API key, on `metrics_listen`: for a scraper on another
/// host, on an address the operator chose for it.
pub async fn serve_metrics(
    listener: TcpListener,
    state: Arc<GatewayState>,
    shutdown: watch::Receiver<bool>,
) {
    steward_net::serve(listener, ServerOptions::default(), shutdown, move |req| {
        let state = state.clone();
        async move {
            if req.uri().path() == "/metrics" {
                metrics(&state)
            } else {
                crate::responses::error(
                    hyper::StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    "this listener serves /metrics only",
                )
            }
        }
    })
    .await;
}
