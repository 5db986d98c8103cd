//! `/metrics` in Prometheus' text format: requests by route, backend and outcome,
//! failovers, ejections, the time to the first byte and in total, and backends up.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub route: String,
    pub backend: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabel {
    pub backend: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<Outcome, Counter>,
    pub failovers: Family<RouteLabel, Counter>,
    pub first_byte: Family<RouteLabel, Histogram>,
    pub backend_up: Family<BackendLabel, Gauge>,
}

fn latency() -> Histogram {
    // 0.1 ms to about 100 s.
    Histogram::new(exponential_buckets(0.0001, 2.5, 16))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("steward_gateway");
        let requests = Family::<Outcome, Counter>::default();
        let failovers = Family::<RouteLabel, Counter>::default();
        let first_byte =
            Family::<RouteLabel, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        let backend_up = Family::<BackendLabel, Gauge>::default();
        registry.register(
            "requests",
            "Requests by route, backend and outcome",
            requests.clone(),
        );
        registry.register(
            "failovers",
            "Requests moved to another backend",
            failovers.clone(),
        );
        registry.register(
            "first_byte_seconds",
            "Time from the request to the backend's response head",
            first_byte.clone(),
        );
        registry.register(
            "backend_up",
            "1 when the backend may be routed to",
            backend_up.clone(),
        );
        Metrics {
            registry,
            requests,
            failovers,
            first_byte,
            backend_up,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
