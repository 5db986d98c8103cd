//! What the agent's dashboard shows of the gateway: each route's backends with their
//! state and load, its failovers, and its recent first-byte percentiles.

use crate::state::GatewayState;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct RouteView {
    pub model: String,
    pub waiting: u32,
    pub failovers: u64,
    /// First-byte time over the latest requests, in milliseconds.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub backends: Vec<BackendView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendView {
    pub url: String,
    pub service: Option<String>,
    /// `up`, `down (…)`, `ejected`, `loading`, `held off (…)`.
    pub state: String,
    pub in_flight: i64,
    pub ok: u64,
    pub failed_over: u64,
}

impl GatewayState {
    pub fn view(&self) -> Vec<RouteView> {
        self.cfg
            .routes
            .iter()
            .zip(&self.routes)
            .map(|(r, rs)| {
                let recent = rs.recent.percentiles_ms();
                RouteView {
                    model: r.model.clone(),
                    waiting: rs.waiting.load(std::sync::atomic::Ordering::Relaxed),
                    failovers: rs.metrics.failovers.get(),
                    p50_ms: recent.map(|r| r.0),
                    p99_ms: recent.map(|r| r.1),
                    backends: rs
                        .backends
                        .iter()
                        .map(|(up, bm)| BackendView {
                            url: up.url.clone(),
                            service: up.service.clone(),
                            state: up.health.describe(),
                            in_flight: up.metrics.in_flight.get(),
                            ok: bm.ok.get(),
                            failed_over: bm.failed_over.get(),
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// The gateway's series, in the OpenMetrics text format.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode()
    }
}
