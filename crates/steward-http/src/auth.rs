//! The bearer token, compared in constant time (its bytes cannot be learnt from how long
//! a refusal takes).

use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;
use steward_config::HttpToken;

/// Whether `headers` carry `token` (always true without one).
pub fn authorized(headers: &HeaderMap, token: Option<&HttpToken>) -> bool {
    let Some(token) = token else { return true };
    let Some(given) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    constant_time_eq::constant_time_eq(given.trim().as_bytes(), token.expose().as_bytes())
}
