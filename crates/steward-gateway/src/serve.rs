//! The gateway's listeners. Requests are served nginx's way: one thread per CPU, each with
//! a single-threaded runtime that accepts on the shared socket and serves its connections
//! whole, with its own pool of connections to the backends, so that a request never hops
//! between threads. Probes run beside them, on the caller's runtime, until shutdown.

use crate::edge::{handle, metrics, MAX_HEAD};
use crate::probe::{probe_loop, PROBE_EVERY};
use crate::state::GatewayState;
use std::sync::Arc;
use steward_net::ServerOptions;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

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
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut done = Vec::new();
    match listener.into_std() {
        Ok(shared) => {
            for i in 0..threads {
                let (tx, rx) = oneshot::channel::<()>();
                let started = shared.try_clone().and_then(|l| {
                    let (state, shutdown) = (state.clone(), shutdown.clone());
                    std::thread::Builder::new()
                        .name(format!("gateway-{i}"))
                        .spawn(move || {
                            serve_on_this_thread(l, state, options, shutdown);
                            let _ = tx.send(());
                        })
                });
                match started {
                    Ok(_) => done.push(rx),
                    Err(e) => tracing::warn!("gateway: cannot start serving thread {i}: {e}"),
                }
            }
        }
        Err(e) => tracing::warn!("gateway: cannot share its listener: {e}"),
    }
    for rx in done {
        let _ = rx.await;
    }
    let _ = probes.await;
}

/// One serving thread: its runtime, its client to the backends, its accept loop.
fn serve_on_this_thread(
    listener: std::net::TcpListener,
    state: Arc<GatewayState>,
    options: ServerOptions,
    shutdown: watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return tracing::warn!("gateway: cannot start a serving runtime: {e}"),
    };
    runtime.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => return tracing::warn!("gateway: cannot listen on this thread: {e}"),
        };
        let client = state.new_client();
        steward_net::serve(listener, options, shutdown, move |req| {
            let (state, client) = (state.clone(), client.clone());
            async move { handle(&state, &client, req).await }
        })
        .await;
    });
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
