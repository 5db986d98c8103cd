//! Health checks, with docker compose's semantics: `interval`, `timeout`, `retries`,
//! `start_period` (a grace window in which failures do not count).

use crate::HumanDuration;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub http: Option<String>,
    pub tcp: Option<String>,
    pub exec: Option<Vec<String>>,
    pub interval: Option<HumanDuration>,
    pub timeout: Option<HumanDuration>,
    pub retries: Option<u32>,
    pub start_period: Option<HumanDuration>,
    pub start_interval: Option<HumanDuration>,
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// GET the URL: 2xx is healthy, 503 is "not ready yet" (llama.cpp loading its model),
    /// anything else or a timeout is a failure.
    Http {
        host: String,
        port: u16,
        path: String,
        url: String,
    },
    /// A TCP connect that succeeds is healthy.
    Tcp { address: String },
    /// A program that exits 0 is healthy.
    Exec { argv: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    pub probe: Probe,
    pub interval: HumanDuration,
    pub timeout: HumanDuration,
    /// Consecutive failures that make a service unhealthy.
    pub retries: u32,
    pub start_period: HumanDuration,
    /// How often to probe until the first success, so that a replica that is ready is seen
    /// as ready quickly (the next one on its GPU is waiting for that).
    pub start_interval: HumanDuration,
}

/// Validates a `health` table; errors name the sub-key at fault.
pub fn resolve(raw: RawHealth) -> Result<HealthCheck, (&'static str, String)> {
    let probes = [raw.http.is_some(), raw.tcp.is_some(), raw.exec.is_some()];
    let probe = match (raw.http, raw.tcp, raw.exec) {
        _ if probes.iter().filter(|p| **p).count() > 1 => {
            return Err(("http", "give exactly one of `http`, `tcp` or `exec`, not several".into()))
        }
        (Some(url), None, None) => parse_http(&url).map_err(|m| ("http", m))?,
        (None, Some(address), None) => {
            if !address.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) {
                return Err(("tcp", format!("\"{address}\" is not host:port; write e.g. \"127.0.0.1:6379\"")));
            }
            Probe::Tcp { address }
        }
        (None, None, Some(argv)) => {
            if argv.first().is_none_or(|p| p.is_empty()) {
                return Err(("exec", "the argv array is empty; its first item is the program to run".into()));
            }
            Probe::Exec { argv }
        }
        _ => {
            return Err((
                "http",
                "a health check needs one of `http = \"http://127.0.0.1:8000/health\"`, `tcp = \"127.0.0.1:6379\"` or `exec = [\"redis-cli\", \"ping\"]`".into(),
            ))
        }
    };
    let interval = raw.interval.unwrap_or(HumanDuration::secs(5));
    let timeout = raw.timeout.unwrap_or(HumanDuration::secs(3));
    if interval.0.is_zero() {
        return Err(("interval", "must be longer than 0s, e.g. \"5s\"".into()));
    }
    if timeout.0.is_zero() {
        return Err(("timeout", "must be longer than 0s, e.g. \"3s\"".into()));
    }
    let start_interval = raw
        .start_interval
        .unwrap_or(HumanDuration::millis(500))
        .min(interval);
    if start_interval.0.is_zero() {
        return Err((
            "start_interval",
            "must be longer than 0s, e.g. \"500ms\"".into(),
        ));
    }
    let retries = raw.retries.unwrap_or(3);
    if retries == 0 {
        return Err(("retries", "must be at least 1".into()));
    }
    Ok(HealthCheck {
        probe,
        interval,
        timeout,
        retries,
        start_period: raw.start_period.unwrap_or_default(),
        start_interval,
    })
}

/// `http://host:port/path`. Only plain http: a health check talks to a local port.
fn parse_http(url: &str) -> Result<Probe, String> {
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => {
            return Err(format!(
                "\"{url}\": https health checks are not supported; probe the plain http port, e.g. \"http://127.0.0.1:8000/health\""
            ))
        }
        Some((scheme, _)) => {
            return Err(format!("\"{url}\" is a {scheme} URL; a health check URL starts with http://"))
        }
        None => return Err(format!("\"{url}\" is not a URL; write e.g. \"http://127.0.0.1:8000/health\"")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']'),
            p.parse::<u16>()
                .map_err(|_| format!("\"{p}\" in \"{url}\" is not a port"))?,
        ),
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("\"{url}\" has no host"));
    }
    Ok(Probe::Http {
        host: host.to_string(),
        port,
        path: path.to_string(),
        url: url.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_parse_and_others_are_refused() {
        let p = parse_http("http://127.0.0.1:8080/health?x=1").unwrap();
        assert_eq!(
            p,
            Probe::Http {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/health?x=1".into(),
                url: "http://127.0.0.1:8080/health?x=1".into()
            }
        );
        assert!(matches!(
            parse_http("http://localhost").unwrap(),
            Probe::Http { port: 80, .. }
        ));
        assert!(parse_http("ftp://x/").unwrap_err().contains("ftp URL"));
        assert!(parse_http("localhost:80")
            .unwrap_err()
            .contains("not a URL"));
    }
}
