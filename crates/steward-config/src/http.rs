//! `[http]`: the agent's own HTTP face (`/health`, `/ready`). Off unless the section is
//! there; on loopback by default; beyond loopback only with a token.

use crate::context::Ctx;
use crate::ConfigError;
use serde::{Deserialize, Serialize, Serializer};
use std::net::SocketAddr;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<String>,
    /// The token, or `env:VAR` to read it from the environment.
    pub token: Option<String>,
    pub read_only: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Http {
    pub listen: SocketAddr,
    /// Every request must carry it (`Authorization: Bearer …`) when set.
    pub token: Option<HttpToken>,
    /// Refuse every action; only reads are served.
    pub read_only: bool,
}

/// A bearer token: never printed, logged or serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpToken(String);

impl HttpToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for HttpToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpToken(***)")
    }
}

impl Serialize for HttpToken {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9400";

pub(crate) fn resolve(ctx: &Ctx, raw: RawHttp) -> Result<Http, ConfigError> {
    let text = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.into());
    let listen = listen_addr(&text).map_err(|why| ctx.err(&["http", "listen"], why))?;
    let token = raw
        .token
        .map(|t| token(&t).map_err(|why| ctx.err(&["http", "token"], why)))
        .transpose()?;
    if token.is_none() && !listen.ip().is_loopback() {
        return Err(ctx.err(
            &["http", "listen"],
            format!("{text} is beyond loopback, and there is no token: anyone who reaches it could stop your services. Set [http] token (e.g. \"env:STEWARD_HTTP_TOKEN\"), or listen on 127.0.0.1"),
        ));
    }
    Ok(Http {
        listen,
        token,
        read_only: raw.read_only.unwrap_or(false),
    })
}

/// `IP:PORT`, or `localhost:PORT` (as 127.0.0.1).
fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    let bad = || {
        format!("{text:?} is not an address to listen on; write IP:PORT, e.g. \"{DEFAULT_LISTEN}\"")
    };
    if let Some(port) = text.strip_prefix("localhost:") {
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|_| bad())
}

/// A literal token or `env:VAR`; an unset or empty one is an error, never "no auth".
fn token(raw: &str) -> Result<HttpToken, String> {
    let value = match raw.strip_prefix("env:") {
        Some(var) => std::env::var(var).map_err(|_| {
            format!("env:{var} is not set (or not UTF-8); set it to the token, or remove [http] token (loopback only then)")
        })?,
        None => raw.to_string(),
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(
            "the token is empty; set a token, or remove [http] token (loopback only then)".into(),
        );
    }
    Ok(HttpToken(value))
}
