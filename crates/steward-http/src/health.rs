//! `/health` and `/ready`: 200 when every service that should be up is up (running, and
//! healthy where it has a check; or a one-shot that exited 0), else 503 naming each one
//! that is not, why, and the explain finding of its last failure where there is one.

use hyper::StatusCode;
use serde_json::{json, Value};
use steward_api::ServiceStatus;

pub fn health_reply(statuses: &[ServiceStatus]) -> (StatusCode, Value) {
    let awaited = steward_api::awaited(statuses);
    let not_up: Vec<Value> = statuses
        .iter()
        .filter(|s| !s.is_up())
        .zip(&awaited)
        .map(|(s, why)| {
            json!({
                "service": s.name,
                "state": s.state.to_string(),
                "why": why,
                "last_health_error": s.last_health_error,
                "explain": s.last_explain,
            })
        })
        .collect();
    let status = if not_up.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if not_up.is_empty() { "ok" } else { "unavailable" },
        "services": statuses.len(),
        "up": statuses.len() - not_up.len(),
        "not_up": not_up,
    });
    (status, body)
}
