//! `/metrics` in Prometheus' text format: requests by route, backend and outcome;
//! failovers, ejections, retries refused by the budget; the time to the first byte, in
//! total, and the gateway's own share of it; queue depth, requests in flight, backends up.
//!
//! The per-request series are looked up once, when the gateway starts (see `RouteMetrics`
//! and `BackendMetrics`), so a request only touches atomics.

use crate::try_error::TryError;
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabel {
    pub backend: String,
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<Outcome, Counter>,
    failovers: Family<RouteLabel, Counter>,
    budget_refusals: Family<RouteLabel, Counter>,
    first_byte: Family<RouteLabel, Histogram>,
    total: Family<RouteLabel, Histogram>,
    overhead: Family<RouteLabel, Histogram>,
    queue_depth: Family<RouteLabel, Gauge>,
    ejections: Family<BackendLabel, Counter>,
    failures: Family<FailureLabel, Counter>,
    in_flight: Family<BackendLabel, Gauge>,
    backend_up: Family<BackendLabel, Gauge>,
}

/// A route's series.
pub struct RouteMetrics {
    pub failovers: Counter,
    pub budget_refusals: Counter,
    pub first_byte: Histogram,
    pub total: Histogram,
    pub overhead: Histogram,
    pub queue_depth: Gauge,
    /// Answered 503: every backend full and the queue too, or its wait ran out.
    pub overloaded: Counter,
    /// Answered 502/504: every try failed.
    pub exhausted: Counter,
}

/// A backend's series, as seen from one route.
pub struct BackendMetrics {
    pub ok: Counter,
    pub failed_over: Counter,
}

/// A backend URL's series, whatever the route.
pub struct UrlMetrics {
    pub ejections: Counter,
    pub up: Gauge,
    pub in_flight: Gauge,
    /// Failed tries by reason ([`TryError::label`]), made at start.
    failures: Vec<(&'static str, Counter)>,
}

impl UrlMetrics {
    /// Counts one failed try.
    pub fn failure(&self, reason: &str) {
        if let Some((_, c)) = self.failures.iter().find(|(r, _)| *r == reason) {
            c.inc();
        }
    }
}

fn latency() -> Histogram {
    // 50 µs to about 30 min: the overhead is tens of µs, a long generation minutes.
    Histogram::new(exponential_buckets(0.00005, 2.5, 20))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("steward_gateway");
        let new_latency =
            || Family::<RouteLabel, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        let m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            failovers: Family::default(),
            budget_refusals: Family::default(),
            first_byte: new_latency(),
            total: new_latency(),
            overhead: new_latency(),
            queue_depth: Family::default(),
            ejections: Family::default(),
            failures: Family::default(),
            in_flight: Family::default(),
            backend_up: Family::default(),
        };
        registry.register(
            "requests",
            "Requests by route, backend and outcome (ok, failed_over, overloaded, exhausted)",
            m.requests.clone(),
        );
        registry.register(
            "failovers",
            "Requests answered by another backend than the first tried",
            m.failovers.clone(),
        );
        registry.register(
            "retry_budget_refusals",
            "Retries not made because the retry budget was spent",
            m.budget_refusals.clone(),
        );
        registry.register(
            "first_byte_seconds",
            "Time from sending a request to the backend to what the client gets first: a stream's first data event, or a whole non-streaming answer (read and checked before it is passed on)",
            m.first_byte.clone(),
        );
        registry.register(
            "total_seconds",
            "Time from receiving a request to the end of its response",
            m.total.clone(),
        );
        registry.register(
            "overhead_seconds",
            "The gateway's own time per request: receiving, routing and forwarding, without the backends' time, queueing or backoff",
            m.overhead.clone(),
        );
        registry.register(
            "queue_depth",
            "Requests waiting for a free backend slot",
            m.queue_depth.clone(),
        );
        registry.register(
            "ejections",
            "Times a backend was put in a cooldown after failures",
            m.ejections.clone(),
        );
        registry.register(
            "backend_failures",
            "Failed tries on a backend, by reason (connect_refused, head_timeout, status_5xx, not_json, …)",
            m.failures.clone(),
        );
        registry.register(
            "in_flight",
            "Requests in flight to the backend",
            m.in_flight.clone(),
        );
        registry.register(
            "backend_up",
            "1 when the backend may be routed to",
            m.backend_up.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn route(&self, route: &str) -> RouteMetrics {
        let r = RouteLabel {
            route: route.to_string(),
        };
        let outcome = |o: &str| {
            self.requests
                .get_or_create(&Outcome {
                    route: route.to_string(),
                    backend: String::new(),
                    outcome: o.to_string(),
                })
                .clone()
        };
        RouteMetrics {
            failovers: self.failovers.get_or_create(&r).clone(),
            budget_refusals: self.budget_refusals.get_or_create(&r).clone(),
            first_byte: self.first_byte.get_or_create(&r).clone(),
            total: self.total.get_or_create(&r).clone(),
            overhead: self.overhead.get_or_create(&r).clone(),
            queue_depth: self.queue_depth.get_or_create(&r).clone(),
            overloaded: outcome("overloaded"),
            exhausted: outcome("exhausted"),
        }
    }

    pub fn backend(&self, route: &str, url: &str) -> BackendMetrics {
        let outcome = |o: &str| {
            self.requests
                .get_or_create(&Outcome {
                    route: route.to_string(),
                    backend: url.to_string(),
                    outcome: o.to_string(),
                })
                .clone()
        };
        BackendMetrics {
            ok: outcome("ok"),
            failed_over: outcome("failed_over"),
        }
    }

    pub fn url(&self, url: &str) -> UrlMetrics {
        let b = BackendLabel {
            backend: url.to_string(),
        };
        let failures = TryError::LABELS
            .iter()
            .map(|reason| {
                let label = FailureLabel {
                    backend: url.to_string(),
                    reason: reason.to_string(),
                };
                (*reason, self.failures.get_or_create(&label).clone())
            })
            .collect();
        UrlMetrics {
            ejections: self.ejections.get_or_create(&b).clone(),
            up: self.backend_up.get_or_create(&b).clone(),
            in_flight: self.in_flight.get_or_create(&b).clone(),
            failures,
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
