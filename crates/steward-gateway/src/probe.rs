//! Active health checks: every backend, every half second, all at once so that one hung
//! backend delays none. A service backend asks the supervisor; a URL answers `GET /health`
//! by the one rule every prober of steward follows (2xx up, 503 loading, else down).

use crate::health::Probe;
use crate::state::{GatewayState, Upstream};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::Request;
use std::sync::Arc;
use std::time::Duration;
use steward_net::Verdict;
use tokio::sync::watch;

/// How often each backend's health is checked.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(500);

/// How long a probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks every backend every `every`, until `shutdown`.
pub(crate) async fn probe_loop(
    state: Arc<GatewayState>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let mut probes = tokio::task::JoinSet::new();
        for up in &state.upstreams {
            // Without a probe, only failed tries (passive ejection) take it out, and only
            // a success or its cooldown bring it back.
            if up.health_path.is_none() && up.service.is_none() {
                continue;
            }
            let (up, state) = (up.clone(), state.clone());
            probes.spawn(async move {
                let (probe, note, timed_out) = probe(&state, &up).await;
                up.health.probed(probe, note, timed_out);
                up.metrics.up.set(i64::from(up.health.routable()));
            });
        }
        while probes.join_next().await.is_some() {}
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = steward_net::stopped(&mut shutdown) => return,
        }
    }
}

/// What a probe found: the state, why it is down (in words), and whether it timed out.
async fn probe(state: &GatewayState, up: &Upstream) -> (Probe, Option<String>, bool) {
    if let (Some(service), Some(states)) = (&up.service, &state.services) {
        return match states.ready(service) {
            Ok(()) => (Probe::Up, None, false),
            Err(why) => (
                Probe::Down,
                Some(format!("service {service}: {why}")),
                false,
            ),
        };
    }
    let Some(path) = &up.health_path else {
        return (Probe::Up, None, false);
    };
    let Ok(req) = Request::get(format!("{}{path}", up.url)).body(Full::new(Bytes::new())) else {
        return (
            Probe::Down,
            Some(format!("{}{path} is not a URL", up.url)),
            false,
        );
    };
    match tokio::time::timeout(PROBE_TIMEOUT, state.client.request(req)).await {
        Ok(Ok(r)) => match steward_net::verdict(r.status()) {
            Verdict::Up => (Probe::Up, None, false),
            Verdict::Loading => (Probe::Loading, None, false),
            Verdict::Down(why) => (
                Probe::Down,
                Some(format!("GET {path} {why} (set the backend's health = \"/path\", or false for no probe)")),
                false,
            ),
        },
        Ok(Err(e)) => (Probe::Down, Some(steward_net::one_line(&e)), false),
        Err(_) => (
            Probe::Down,
            Some(format!("{path} did not answer within {PROBE_TIMEOUT:?}")),
            true,
        ),
    }
}
