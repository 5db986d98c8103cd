//! Lease mode: long-running workers (a model loaded once) pull jobs over HTTP on
//! 127.0.0.1. steward knows which replica holds which lease: a job that outlives its
//! `timeout` gets its replica restarted (`TimedOut`); a replica that dies while holding a
//! lease fails the job with the way it died, and the job goes to another replica; a
//! worker that stops heartbeating loses the lease (`LeaseExpired`).
//!
//! The endpoints are in [`api`]; what watches the leases is in [`watch`].

mod api;
mod broker;
mod watch;

pub use broker::{LeaseBroker, LEASE_TTL};

use std::sync::Arc;
use steward_net::ServerOptions;
use tokio::net::TcpListener;

/// Serves the API on `listener` and watches the leases, until `shutdown`.
pub async fn serve(
    broker: Arc<LeaseBroker>,
    listener: TcpListener,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let watcher = tokio::spawn(watch::watch_leases(broker.clone(), shutdown.clone()));
    steward_net::serve(listener, ServerOptions::default(), shutdown, move |req| {
        let broker = broker.clone();
        async move { api::handle(&broker, req).await }
    })
    .await;
    let _ = watcher.await;
}
