//! `[gateway]`: an OpenAI-compatible front for inference backends, with priority
//! failover and bounded timeouts.

use crate::resolve::Ctx;
use crate::{ByteSize, ConfigError, HumanDuration};
use serde::{Deserialize, Serialize};

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
    #[serde(default)]
    pub api_keys: Vec<String>,
    pub max_body: Option<ByteSize>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub model: String,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    pub backends: Vec<RawBackend>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub url: Option<String>,
    pub service: Option<String>,
    pub priority: Option<u32>,
    pub weight: Option<u32>,
    pub model: Option<String>,
    pub max_concurrency: Option<u32>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
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
    /// Resolved keys (never printed by `config check`).
    #[serde(skip)]
    pub api_keys: Vec<String>,
    pub max_body: ByteSize,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Route {
    pub model: String,
    pub backends: Vec<Backend>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Backend {
    /// `http://host:port`, no trailing slash.
    pub url: String,
    pub priority: u32,
    pub weight: u32,
    /// Rewrite the request's `model` to this.
    pub model: Option<String>,
    pub max_concurrency: Option<u32>,
    pub timeouts: Timeouts,
}

pub(crate) fn resolve(ctx: &Ctx, raw: RawGateway) -> Result<Gateway, ConfigError> {
    let defaults = Timeouts {
        connect: HumanDuration::secs(2),
        first_byte: HumanDuration::secs(60),
        idle: HumanDuration::secs(60),
        total: HumanDuration::secs(600),
    }
    .over(raw.timeouts);
    let mut keys = Vec::new();
    for k in raw.api_keys {
        match k.strip_prefix("env:") {
            // A variable may hold several keys, comma-separated.
            Some(var) => keys.extend(
                std::env::var(var)
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            ),
            None => keys.push(k),
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
            let url = match (b.url, b.service) {
                (Some(u), None) => u,
                (None, Some(s)) => {
                    return Err(ctx.err(
                        &["gateway", "routes"],
                        format!("backend service = \"{s}\": service backends are not supported yet; give its url = \"http://127.0.0.1:PORT\""),
                    ))
                }
                _ => return Err(ctx.err(&["gateway", "routes"], format!("a backend of route \"{}\" needs a url", r.model))),
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
            backends.push(Backend {
                url: url.trim_end_matches('/').to_string(),
                priority: b.priority.unwrap_or(1),
                weight: b.weight.unwrap_or(1).max(1),
                model: b.model,
                max_concurrency: b.max_concurrency,
                timeouts: route_t.over(b.timeouts),
            });
        }
        backends.sort_by_key(|b| b.priority);
        routes.push(Route {
            model: r.model,
            backends,
        });
    }
    Ok(Gateway {
        listen: raw.listen.unwrap_or_else(|| "127.0.0.1:8000".into()),
        api_keys: keys,
        max_body: raw.max_body.unwrap_or(ByteSize(8 << 20)),
        routes,
    })
}
