//! Who may ask. With a token: a bearer header carrying it, or the session cookie the login
//! form sets after it was typed in (compared in constant time). Without one (loopback
//! only, as the config allows): anyone on this host, but a `Host` that is not a loopback
//! name is refused, so a web page cannot reach the agent by DNS rebinding. Actions need
//! POST from this page's own origin (CSRF).

use hyper::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN};
use hyper::HeaderMap;
use std::sync::Mutex;
use steward_config::HttpToken;

pub const COOKIE_NAME: &str = "steward_session";

/// The most sessions kept; the oldest logins are forgotten past it.
const MAX_SESSIONS: usize = 1024;

/// Sessions the login form opened, until the agent restarts.
#[derive(Default)]
pub struct Sessions(Mutex<Vec<String>>);

impl Sessions {
    /// A new session's id: 128 random bits from the kernel.
    pub fn open(&self) -> Option<String> {
        use std::io::Read;
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .ok()?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if s.len() == MAX_SESSIONS {
            s.remove(0);
        }
        s.push(id.clone());
        Some(id)
    }

    fn holds(&self, id: &str) -> bool {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.iter()
            .any(|k| constant_time_eq::constant_time_eq(k.as_bytes(), id.as_bytes()))
    }
}

/// How a request proved itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// The login form's cookie: a browser, so its actions need the Origin check.
    Session,
    /// No token is configured (loopback only).
    Local,
}

pub fn caller(
    headers: &HeaderMap,
    token: Option<&HttpToken>,
    sessions: &Sessions,
) -> Option<Caller> {
    let Some(token) = token else {
        return loopback_host(headers).then_some(Caller::Local);
    };
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(given) = bearer {
        return token_matches(given, token).then_some(Caller::Bearer);
    }
    session_cookie(headers)
        .filter(|id| sessions.holds(id))
        .map(|_| Caller::Session)
}

pub fn token_matches(given: &str, token: &HttpToken) -> bool {
    constant_time_eq::constant_time_eq(given.trim().as_bytes(), token.expose().as_bytes())
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.to_string())
}

/// `Host` names this host by a loopback name or address (or is absent: HTTP/1.0).
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let name = match host.strip_prefix('[') {
        // `[addr]` or `[addr]:port`, nothing else after the bracket.
        Some(v6) => match v6.split_once(']') {
            Some((addr, "")) => addr,
            Some((addr, port)) if port.strip_prefix(':').is_some_and(is_port) => addr,
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((h, port)) if is_port(port) => h,
            Some(_) => return false,
            None => host,
        },
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
}

/// An action's `Origin`, when there is one (a browser always sends one on POST), must be
/// this server as the request's `Host` names it. A browser session must send one; a
/// program (curl, a script) sends none and proves itself by the token or by being on this
/// host.
pub fn same_origin(headers: &HeaderMap, caller: Caller) -> bool {
    let origin = headers.get(ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(o), Some(h)) => o == format!("http://{h}") || o == format!("https://{h}"),
        (Some(_), None) => false,
        (None, _) => caller != Caller::Session,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn without_a_token_only_loopback_host_names_pass() {
        let s = Sessions::default();
        for ok in [
            "127.0.0.1:9400",
            "localhost:9400",
            "[::1]:9400",
            "localhost",
        ] {
            assert_eq!(
                caller(&headers(&[("host", ok)]), None, &s),
                Some(Caller::Local),
                "{ok}"
            );
        }
        for bad in ["evil.example:9400", "10.0.0.1:9400", "[::1].evil:1"] {
            assert_eq!(caller(&headers(&[("host", bad)]), None, &s), None, "{bad}");
        }
    }

    #[test]
    fn an_action_from_another_origin_is_refused() {
        let h = headers(&[
            ("host", "127.0.0.1:9400"),
            ("origin", "http://127.0.0.1:9400"),
        ]);
        assert!(same_origin(&h, Caller::Session));
        let h = headers(&[
            ("host", "127.0.0.1:9400"),
            ("origin", "https://evil.example"),
        ]);
        assert!(!same_origin(&h, Caller::Session));
        assert!(!same_origin(&h, Caller::Bearer));
        let h = headers(&[("host", "127.0.0.1:9400")]);
        assert!(same_origin(&h, Caller::Bearer));
        assert!(same_origin(&h, Caller::Local));
        assert!(!same_origin(&h, Caller::Session));
    }
}
