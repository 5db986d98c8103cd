//! `[gateway]`: an OpenAI-compatible front for inference backends, with priority
//! failover and bounded timeouts.

use crate::context::Ctx;
use crate::health::Probe;
use crate::{ByteSize, ConfigError, HumanDuration, Service};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<HumanDuration>,
    pub first_byte: Option<HumanDuration>,
    pub idle: Option<HumanDuration>,
    pub total: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    pub listen: Option<String>,
    pub metrics_listen: Option<String>,
    #[serde(default)]
    pub api_keys: Vec<String>,
    pub max_body: Option<ByteSize>,
    pub client_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    pub queue_timeout: Option<HumanDuration>,
    pub max_queue: Option<u32>,
    pub retry_budget: Option<RawRetryBudget>,
    #[serde(default)]
    pub retries: RawRetries,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetryBudget {
    pub ratio: Option<f64>,
    pub min_retries: Option<u32>,
    pub window: Option<HumanDuration>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct RawRetries {
    pub rounds: Option<u32>,
    pub backoff: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub model: String,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    pub queue_timeout: Option<HumanDuration>,
    pub max_queue: Option<u32>,
    #[serde(default)]
    pub retries: RawRetries,
    pub backends: Vec<RawBackend>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    /// What clients and metrics call it (default: its service, or `MODEL#N`).
    pub name: Option<String>,
    pub url: Option<String>,
    pub service: Option<String>,
    /// The path probed for health (default `/health`), or `false`: no probe, only
    /// passive ejection (for a server without a health endpoint).
    pub health: Option<RawHealthPath>,
    pub priority: Option<u32>,
    pub weight: Option<u32>,
    pub model: Option<String>,
    pub max_concurrency: Option<u32>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
}

#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a path such as \"/health\", or false for no probe"
)]
pub enum RawHealthPath {
    Path(String),
    Enabled(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Timeouts {
    pub connect: HumanDuration,
    /// To the response head (and, for a stream, its first data event).
    pub first_byte: HumanDuration,
    /// The longest gap between chunks of a stream.
    pub idle: HumanDuration,
    /// No request outlives this.
    pub total: HumanDuration,
}

impl Timeouts {
    fn over(self, raw: RawTimeouts) -> Timeouts {
        Timeouts {
            connect: raw.connect.unwrap_or(self.connect),
            first_byte: raw.first_byte.unwrap_or(self.first_byte),
            idle: raw.idle.unwrap_or(self.idle),
            total: raw.total.unwrap_or(self.total),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Gateway {
    pub listen: String,
    /// A listener of its own for `/metrics`, served there without an API key (for a
    /// scraper on another host). On `listen`, `/metrics` needs no key from loopback only.
    pub metrics_listen: Option<String>,
    /// Resolved keys (never printed by `config check`).
    #[serde(skip)]
    pub api_keys: Vec<String>,
    pub max_body: ByteSize,
    /// How long a client has to send its request head, and then its body: a slow-loris
    /// client is cut off (head) or answered 408 (body).
    pub client_timeout: HumanDuration,
    pub retry_budget: RetryBudget,
    pub routes: Vec<Route>,
}

/// Retries (tries after a request's first) may be at most `ratio` of the requests seen in
/// the last `window`, plus `min_retries`, so that a failing backend cannot multiply the load
/// on the others (a retry storm).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RetryBudget {
    pub ratio: f64,
    pub min_retries: u32,
    pub window: HumanDuration,
}

/// How often a request goes round its backends, and the pause between rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Retries {
    /// Passes over the route's backends; 1 means each backend is tried at most once.
    pub rounds: u32,
    /// The pause before the second round; it doubles each round (with jitter), and never
    /// runs past the request's `total`.
    pub backoff: HumanDuration,
}

#[derive(Debug, Clone, Serialize)]
pub struct Route {
    pub model: String,
    /// How long a request waits for a free slot when every backend is at its
    /// `max_concurrency`, before it gets 503 with Retry-After.
    pub queue_timeout: HumanDuration,
    /// Requests that may wait at once; the next one gets 503 at once.
    pub max_queue: u32,
    pub retries: Retries,
    pub backends: Vec<Backend>,
}

impl Route {
    /// No request of this route outlives this: the longest `total` of its backends.
    pub fn total(&self) -> std::time::Duration {
        self.backends
            .iter()
            .map(|b| b.timeouts.total.0)
            .max()
            .unwrap_or(std::time::Duration::from_secs(600))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Backend {
    /// What it is called where clients can see it (the `x-steward-backend` header): its
    /// `name`, else its service, else `MODEL#N` (N counts from 0 in priority order). Never
    /// its URL, which is internal.
    pub name: String,
    /// `http://host:port`, no trailing slash.
    pub url: String,
    /// A steward service behind this URL: its health comes from the supervisor (running
    /// and ready) instead of probes.
    pub service: Option<String>,
    /// The path `GET` probes (2xx up, 503 loading, anything else down); `None`: not
    /// probed, only ejected after failed tries.
    pub health_path: Option<String>,
    pub priority: u32,
    pub weight: u32,
    /// Rewrite the request's `model` to this.
    pub model: Option<String>,
    pub max_concurrency: Option<u32>,
    pub timeouts: Timeouts,
}

/// Where a service listens, read from its http (or tcp) health check.
fn service_url(svc: &Service) -> Option<String> {
    match &svc.health.as_ref()?.probe {
        Probe::Http { host, port, .. } => Some(format!("http://{host}:{port}")),
        Probe::Tcp { address } => Some(format!("http://{address}")),
        Probe::Exec { .. } => None,
    }
}

pub(crate) fn resolve(
    ctx: &Ctx,
    raw: RawGateway,
    services: &BTreeMap<String, std::sync::Arc<Service>>,
) -> Result<Gateway, ConfigError> {
    let defaults = Timeouts {
        connect: HumanDuration::secs(2),
        first_byte: HumanDuration::secs(60),
        idle: HumanDuration::secs(60),
        total: HumanDuration::secs(600),
    }
    .over(raw.timeouts);
    let queue_timeout = raw.queue_timeout.unwrap_or(HumanDuration::secs(2));
    let max_queue = raw.max_queue.unwrap_or(256);
    let retries = Retries {
        rounds: raw.retries.rounds.unwrap_or(2),
        backoff: raw
            .retries
            .backoff
            .unwrap_or(HumanDuration(std::time::Duration::from_millis(100))),
    };
    let retry_budget = match raw.retry_budget {
        None => RetryBudget {
            ratio: 0.2,
            min_retries: 10,
            window: HumanDuration::secs(10),
        },
        Some(b) => {
            let ratio = b.ratio.unwrap_or(0.2);
            if !(0.0..=10.0).contains(&ratio) {
                return Err(ctx.err(
                    &["gateway", "retry_budget"],
                    format!("ratio = {ratio}: give a fraction of requests, e.g. 0.2 for 20%"),
                ));
            }
            let window = b.window.unwrap_or(HumanDuration::secs(10));
            if window.0.is_zero() {
                return Err(ctx.err(
                    &["gateway", "retry_budget"],
                    "window = 0: give a duration such as \"10s\"",
                ));
            }
            RetryBudget {
                ratio,
                min_retries: b.min_retries.unwrap_or(10),
                window,
            }
        }
    };
    let keys = resolve_keys(ctx, raw.api_keys)?;
    let listen = raw.listen.unwrap_or_else(|| "127.0.0.1:8000".into());
    check_listen(&listen).map_err(|m| ctx.err(&["gateway", "listen"], m))?;
    if let Some(m) = &raw.metrics_listen {
        check_listen(m).map_err(|e| ctx.err(&["gateway", "metrics_listen"], e))?;
        if *m == listen {
            return Err(ctx.err(
                &["gateway", "metrics_listen"],
                "is the same address as listen; leave it out to serve /metrics on listen (without a key from loopback)",
            ));
        }
    }
    let mut routes = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in raw.routes {
        if !seen.insert(r.model.clone()) {
            return Err(ctx.err(
                &["gateway", "routes"],
                format!("model \"{}\" has two routes; merge their backends", r.model),
            ));
        }
        let route_t = defaults.over(r.timeouts);
        if r.backends.is_empty() {
            return Err(ctx.err(
                &["gateway", "routes"],
                format!("route \"{}\" has no backends", r.model),
            ));
        }
        let mut backends = Vec::new();
        for b in r.backends {
            if let Some(s) = &b.service {
                if !services.contains_key(s) {
                    let known: Vec<&str> = services.keys().map(String::as_str).collect();
                    return Err(ctx.err(
                        &["gateway", "routes"],
                        format!(
                            "backend service = \"{s}\": there is no such service (services: {})",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                }
            }
            let url = match (b.url, &b.service) {
                (Some(u), _) => u,
                (None, Some(s)) => match service_url(&services[s]) {
                    Some(u) => u,
                    None => return Err(ctx.err(
                        &["gateway", "routes"],
                        format!("backend service = \"{s}\": its address cannot be read from its health check (it needs `http` or `tcp`); give the backend url = \"http://127.0.0.1:PORT\" too"),
                    )),
                },
                (None, None) => return Err(ctx.err(&["gateway", "routes"], format!("a backend of route \"{}\" needs a url or a service", r.model))),
            };
            let Some(rest) = url.strip_prefix("http://") else {
                return Err(ctx.err(
                    &["gateway", "routes"],
                    format!("backend url \"{url}\" must start with http://"),
                ));
            };
            if rest.is_empty() {
                return Err(ctx.err(
                    &["gateway", "routes"],
                    format!("backend url \"{url}\" has no host"),
                ));
            }
            let health_path = match b.health {
                None | Some(RawHealthPath::Enabled(true)) => Some("/health".to_string()),
                Some(RawHealthPath::Enabled(false)) => None,
                Some(RawHealthPath::Path(p)) if p.starts_with('/') => Some(p),
                Some(RawHealthPath::Path(p)) => {
                    return Err(ctx.err(
                        &["gateway", "routes"],
                        format!("backend {url}: health = {p:?} must be a path starting with '/', such as \"/health\", or false"),
                    ))
                }
            };
            if let Some(n) = &b.name {
                if n.is_empty() || !n.chars().all(|c| c.is_ascii_graphic()) {
                    return Err(ctx.err(
                        &["gateway", "routes"],
                        format!("backend name {n:?} must be printable ASCII without spaces (it goes in a header)"),
                    ));
                }
            }
            backends.push(Backend {
                name: b.name.or_else(|| b.service.clone()).unwrap_or_default(),
                url: url.trim_end_matches('/').to_string(),
                service: b.service,
                health_path,
                priority: b.priority.unwrap_or(1),
                weight: b.weight.unwrap_or(1).max(1),
                model: b.model,
                max_concurrency: b.max_concurrency,
                timeouts: route_t.over(b.timeouts),
            });
        }
        backends.sort_by_key(|b| b.priority);
        for (i, b) in backends.iter_mut().enumerate() {
            if b.name.is_empty() {
                b.name = format!("{}#{i}", r.model);
            }
        }
        let rounds = r.retries.rounds.unwrap_or(retries.rounds);
        if rounds == 0 {
            return Err(ctx.err(
                &["gateway", "routes"],
                format!(
                    "route \"{}\": retries.rounds = 0 would try nothing; 1 tries each backend once",
                    r.model
                ),
            ));
        }
        routes.push(Route {
            model: r.model,
            queue_timeout: r.queue_timeout.unwrap_or(queue_timeout),
            max_queue: r.max_queue.unwrap_or(max_queue),
            retries: Retries {
                rounds,
                backoff: r.retries.backoff.unwrap_or(retries.backoff),
            },
            backends,
        });
    }
    Ok(Gateway {
        listen,
        metrics_listen: raw.metrics_listen,
        api_keys: keys,
        max_body: raw.max_body.unwrap_or(ByteSize(8 << 20)),
        client_timeout: raw.client_timeout.unwrap_or(HumanDuration::secs(10)),
        retry_budget,
        routes,
    })
}

/// `api_keys`: literal keys, or `env:VAR` holding one or more, comma-separated. Keys that
/// were asked for and resolve to none are an error naming the variable: a gateway never
/// serves without the keys its config names.
fn resolve_keys(ctx: &Ctx, raw: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let at = ["gateway", "api_keys"];
    let mut keys = Vec::new();
    for k in raw {
        match k.strip_prefix("env:") {
            Some(var) => {
                let value = std::env::var_os(var).ok_or_else(|| {
                    ctx.err(&at, format!("env:{var} is not set; set it to the key (or keys, comma-separated), or remove it from api_keys. The gateway does not start without the keys it is told to require"))
                })?;
                let value = value.into_string().map_err(|_| {
                    ctx.err(
                        &at,
                        format!("env:{var} is not valid UTF-8; API keys are text"),
                    )
                })?;
                let found: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                if found.is_empty() {
                    return Err(ctx.err(&at, format!("env:{var} holds no key (it is empty or only separators); set it to the key, or keys comma-separated")));
                }
                keys.extend(found);
            }
            None if k.trim().is_empty() => {
                return Err(ctx.err(
                    &at,
                    "an empty key would let any client in; remove it, or give a real key",
                ))
            }
            None => keys.push(k),
        }
    }
    Ok(keys)
}

/// `listen` must be an address to bind: `IP:PORT` or `HOST:PORT`.
fn check_listen(listen: &str) -> Result<(), String> {
    if listen.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let bad = || {
        format!("{listen:?} is not an address to listen on; write IP:PORT, e.g. \"127.0.0.1:8000\"")
    };
    let (host, port) = listen.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(bad());
    }
    Ok(())
}
