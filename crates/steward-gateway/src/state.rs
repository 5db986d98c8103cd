//! The gateway's live state, built once from its config: every backend URL once (shared by
//! the routes that name it) with its health and load, each route's queue, the retry
//! budget, the metrics and the HTTP client.

use crate::budget::RetryBudget;
use crate::health::Health;
use crate::metrics::{BackendMetrics, Metrics, RouteMetrics, UrlMetrics};
use crate::recent::Recent;
use crate::services::ServiceStates;
use crate::slots::InFlight;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use steward_config::Gateway;
use tokio::sync::Notify;

/// One backend URL, shared by every route that names it: its health and its load.
pub(crate) struct Upstream {
    pub url: String,
    pub service: Option<String>,
    /// What the probe asks for; `None`: no probe.
    pub health_path: Option<String>,
    pub health: Health,
    pub in_flight: Arc<InFlight>,
    pub metrics: UrlMetrics,
}

pub(crate) struct RouteState {
    pub waiting: AtomicU32,
    pub metrics: RouteMetrics,
    pub recent: Recent,
    /// In the order of the route's backends.
    pub backends: Vec<(Arc<Upstream>, BackendMetrics)>,
}

/// The gateway's configuration and its live state.
pub struct GatewayState {
    pub(crate) cfg: Gateway,
    pub(crate) client: Client<HttpConnector, Full<Bytes>>,
    pub(crate) upstreams: Vec<Arc<Upstream>>,
    pub(crate) routes: Vec<RouteState>,
    /// Notified whenever any slot is freed: wakes the requests waiting in a route's queue.
    pub(crate) slot_freed: Arc<Notify>,
    pub(crate) budget: RetryBudget,
    pub(crate) metrics: Metrics,
    pub(crate) services: Option<Arc<dyn ServiceStates>>,
}

impl GatewayState {
    /// A gateway whose backends are all probed over HTTP (`steward gateway` alone).
    pub fn new(cfg: Gateway) -> Arc<Self> {
        Self::build(cfg, None)
    }

    /// A gateway inside the agent: backends that are services take their health from
    /// `services` (the supervisor).
    pub fn with_services(cfg: Gateway, services: Arc<dyn ServiceStates>) -> Arc<Self> {
        Self::build(cfg, Some(services))
    }

    fn build(cfg: Gateway, services: Option<Arc<dyn ServiceStates>>) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        // The shortest connect timeout of any backend; per-backend ones are applied per try.
        let connect = cfg
            .routes
            .iter()
            .flat_map(|r| &r.backends)
            .map(|b| b.timeouts.connect.0)
            .min();
        connector.set_connect_timeout(connect);
        connector.set_nodelay(true);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        let metrics = Metrics::new();
        let mut by_url: HashMap<String, Arc<Upstream>> = HashMap::new();
        let mut upstreams = Vec::new();
        let routes = cfg
            .routes
            .iter()
            .map(|r| RouteState {
                waiting: AtomicU32::new(0),
                metrics: metrics.route(&r.model),
                recent: Recent::default(),
                backends: r
                    .backends
                    .iter()
                    .map(|b| {
                        let up = by_url
                            .entry(b.url.clone())
                            .or_insert_with(|| {
                                let m = metrics.url(&b.url);
                                m.up.set(1);
                                let u = Arc::new(Upstream {
                                    url: b.url.clone(),
                                    service: b.service.clone(),
                                    health_path: b.health_path.clone(),
                                    health: Health::default(),
                                    in_flight: Arc::new(InFlight::with_gauge(m.in_flight.clone())),
                                    metrics: m,
                                });
                                upstreams.push(u.clone());
                                u
                            })
                            .clone();
                        (up, metrics.backend(&r.model, &b.url))
                    })
                    .collect(),
            })
            .collect();
        let b = cfg.retry_budget;
        Arc::new(GatewayState {
            budget: RetryBudget::new(b.ratio, b.min_retries, b.window.0),
            cfg,
            client,
            upstreams,
            routes,
            slot_freed: Arc::new(Notify::new()),
            metrics,
            services,
        })
    }
}
