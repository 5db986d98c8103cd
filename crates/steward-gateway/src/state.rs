//! The gateway's live state, built once from its config: every backend URL once (shared by
//! the routes that name it) with its health and load, each route's queue, the retry
//! budget, the metrics and the HTTP client.

use crate::budget::RetryBudget;
use crate::health::Health;
use crate::metrics::{BackendMetrics, Metrics, RouteMetrics, UrlMetrics};
use crate::recent::Recent;
use crate::services::ServiceStates;
use crate::slots::{InFlight, SlotFreed};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use steward_config::Gateway;

/// The endpoints the gateway forwards to a backend.
pub(crate) const COMPLETIONS: [&str; 3] =
    ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"];

/// The HTTP client the gateway reaches its backends with.
pub(crate) type UpstreamClient = Client<HttpConnector, Full<Bytes>>;

fn client(connect_timeout: Option<std::time::Duration>) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(connect_timeout);
    connector.set_nodelay(true);
    Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector)
}

/// One backend URL, shared by every route that names it: its health and its load.
pub(crate) struct Upstream {
    pub url: String,
    /// The URI of each endpoint the gateway forwards, parsed once.
    uris: Vec<(&'static str, hyper::Uri)>,
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

impl Upstream {
    /// The URI of `path` (one of the endpoints the gateway forwards) on this backend.
    pub fn uri(&self, path: &str) -> Option<hyper::Uri> {
        self.uris
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, uri)| uri.clone())
    }
}

/// The gateway's configuration and its live state.
pub struct GatewayState {
    pub(crate) cfg: Gateway,
    /// For the probes; each serving thread has a client (and a pool) of its own.
    pub(crate) client: UpstreamClient,
    connect_timeout: Option<std::time::Duration>,
    pub(crate) upstreams: Vec<Arc<Upstream>>,
    pub(crate) routes: Vec<RouteState>,
    /// Notified whenever any slot is freed: wakes the requests waiting in a route's queue.
    pub(crate) slot_freed: Arc<SlotFreed>,
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

    /// A client to the backends with its own connection pool, for one serving thread.
    pub(crate) fn new_client(&self) -> UpstreamClient {
        client(self.connect_timeout)
    }

    fn build(cfg: Gateway, services: Option<Arc<dyn ServiceStates>>) -> Arc<Self> {
        // The shortest connect timeout of any backend; per-backend ones are applied per try.
        let connect_timeout = cfg
            .routes
            .iter()
            .flat_map(|r| &r.backends)
            .map(|b| b.timeouts.connect.0)
            .min();
        let client = client(connect_timeout);
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
                                    uris: COMPLETIONS
                                        .iter()
                                        .filter_map(|p| {
                                            Some((*p, format!("{}{p}", b.url).parse().ok()?))
                                        })
                                        .collect(),
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
            connect_timeout,
            upstreams,
            routes,
            slot_freed: Arc::default(),
            metrics,
            services,
        })
    }
}
