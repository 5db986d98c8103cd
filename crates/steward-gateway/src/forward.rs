//! A completion request's way through its route: read and check the body, find the route
//! by `model`, then rounds over the route's backends (by priority, then load) until one
//! answers, with a backoff between rounds, a retry budget against retry storms, and a
//! bounded wait in the route's queue when every backend is full.

use crate::attempt::{try_backend, Outgoing};
use crate::balance::{self, Candidate};
use crate::health::Admit;
use crate::responses::{error, Body};
use crate::slots::Waiting;
use crate::state::{GatewayState, RouteState, UpstreamClient};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::time::Duration;
use steward_config::{Backoff, HumanDuration, Route};
use steward_net::BodyError;
use tokio::time::Instant;

/// 503 with Retry-After: the route is full, ask again shortly.
fn overloaded(route: &Route, rs: &RouteState, why: &str) -> Response<Body> {
    rs.metrics.overloaded.inc();
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        format!(
            "every backend of \"{}\" is at its max_concurrency and {why}",
            route.model
        ),
    );
    r.headers_mut()
        .insert("retry-after", hyper::header::HeaderValue::from_static("1"));
    r
}

/// 504 at once: every backend of the route timed out on its last try or probe, so waiting
/// on them again would only spend the client's time. One trial per cooldown still goes.
fn every_backend_hangs(route: &Route, rs: &RouteState, failures: &[String]) -> Response<Body> {
    rs.metrics.exhausted.inc();
    let next = rs
        .backends
        .iter()
        .filter_map(|(up, _)| up.health.next_trial_in())
        .min()
        .unwrap_or_default();
    let earlier = if failures.is_empty() {
        String::new()
    } else {
        format!("; this request: {}", failures.join("; "))
    };
    tracing::info!(
        "gateway: {}: 504, every backend hangs{earlier}",
        route.model
    );
    error(
        StatusCode::GATEWAY_TIMEOUT,
        "timeout",
        format!(
            "every backend of \"{}\" timed out on its last tries and is not tried again for now (the next trial in {:.1} s){earlier}",
            route.model,
            next.as_secs_f64()
        ),
    )
}

/// The pause before round `round` (1, 2, …): the route's `retries.backoff` doubling each
/// round, with up to half of it random so that requests that failed together do not come
/// back together. The one backoff formula of steward ([`Backoff::delay`]).
fn round_backoff(base: Duration, round: u32) -> Duration {
    let backoff = Backoff {
        initial: HumanDuration(base),
        max: HumanDuration(base.saturating_mul(1 << 16)),
        jitter: 0.5,
        reset_after: HumanDuration(Duration::ZERO),
    };
    backoff.delay(round.saturating_sub(1), fastrand::f64())
}

/// What the gateway reads of a request's body: the route's key and whether it streams.
/// The rest is checked to be JSON on the way, but never built into a tree.
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    stream: Option<serde_json::Value>,
}

impl Head<'_> {
    /// A `stream` that is not `true` (absent, false, or not a boolean) is no stream.
    fn streams(&self) -> bool {
        self.stream
            .as_ref()
            .and_then(|s| s.as_bool())
            .unwrap_or(false)
    }
}

/// 400 for a body the fast read refused, saying why: not JSON, no `model`, or a `model`
/// that is not a string. Only refusals pay for reading the body a second time.
fn refusal(body: &[u8]) -> Response<Body> {
    let why = match serde_json::from_slice::<serde_json::Value>(body) {
        Err(e) => format!("the body is not JSON: {e}"),
        Ok(v) => match v.get("model") {
            None => "the body has no \"model\"".to_string(),
            Some(m) if !m.is_string() => format!("the body's \"model\" is not a string: {m}"),
            Some(_) => "the body is not an object with a \"model\" string".to_string(),
        },
    };
    error(StatusCode::BAD_REQUEST, "invalid_request_error", why)
}

pub(crate) async fn forward(
    state: &GatewayState,
    client: &UpstreamClient,
    req: Request<Incoming>,
    path: &str,
    received: Instant,
) -> Response<Body> {
    let limit = state.cfg.max_body.bytes().min(usize::MAX as u64) as usize;
    let body = match steward_net::read_body(
        req.into_body(),
        limit,
        received + state.cfg.client_timeout.0,
    )
    .await
    {
        Ok(b) => b,
        Err(e @ BodyError::TooLarge { .. }) => {
            return error(
                e.status(),
                "invalid_request_error",
                format!("the body is larger than max_body ({limit} bytes)"),
            )
        }
        Err(e @ BodyError::TimedOut) => {
            return error(
                e.status(),
                "invalid_request_error",
                format!(
                    "the body did not arrive within client_timeout ({:?})",
                    state.cfg.client_timeout.0
                ),
            )
        }
        Err(e) => return error(e.status(), "invalid_request_error", e.to_string()),
    };
    let (model, stream) = match serde_json::from_slice::<Head>(&body) {
        Ok(head @ Head { model: Some(_), .. }) => {
            let stream = head.streams();
            (head.model.unwrap_or_default(), stream)
        }
        _ => return refusal(&body),
    };
    let Some(ri) = state.cfg.routes.iter().position(|r| r.model == model) else {
        let known: Vec<&str> = state.cfg.routes.iter().map(|r| r.model.as_str()).collect();
        return error(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "no route for model \"{model}\"; routes: {}",
                known.join(", ")
            ),
        );
    };
    let (route, rs) = (&state.cfg.routes[ri], &state.routes[ri]);
    let deadline = received + route.total();
    let queue_by = (received + route.queue_timeout.0).min(deadline);
    let out = Outgoing {
        path,
        model: &model,
        body: &body,
        stream,
        received,
        deadline,
    };

    state.budget.request();
    let mut attempts = 0u32;
    let mut failures: Vec<String> = Vec::new();
    // Time spent on backends, in the queue and backing off: not the gateway's overhead.
    let mut elsewhere = Duration::ZERO;
    let mut round = 0;
    'rounds: while round < route.retries.rounds {
        if round > 0 {
            let pause = Instant::now();
            let until = (pause + round_backoff(route.retries.backoff.0, round)).min(deadline);
            tokio::time::sleep_until(until).await;
            elsewhere += pause.elapsed();
        }
        // Armed before the backends are looked at, so a slot freed meanwhile is not missed.
        let freed = state.slot_freed.notified();
        // Backends known to hang are left out (each try would cost a full timeout), but
        // for one trial request per cooldown.
        let mut admitted = Vec::new();
        let mut candidates = Vec::new();
        for (i, (b, (up, _))) in route.backends.iter().zip(&rs.backends).enumerate() {
            let admit = up.health.admits();
            if admit == Admit::No {
                continue;
            }
            admitted.push(i);
            candidates.push(Candidate {
                routable: admit == Admit::Yes,
                priority: b.priority,
                in_flight: up.in_flight.get(),
                weight: b.weight,
            });
        }
        if admitted.is_empty() {
            return every_backend_hangs(route, rs, &failures);
        }
        let mut tried = false;
        for ci in balance::order(&candidates, fastrand::f64) {
            let bi = admitted[ci];
            let (backend, (up, bm)) = (&route.backends[bi], &rs.backends[bi]);
            if Instant::now() >= deadline {
                break 'rounds;
            }
            let Some(slot) = up
                .in_flight
                .try_acquire(backend.max_concurrency, &state.slot_freed)
            else {
                continue; // full: the next one
            };
            // A retry (any try after the first) needs the budget's leave, so a failing
            // backend cannot multiply the load on the others.
            if attempts > 0 && !state.budget.allow_retry() {
                rs.metrics.budget_refusals.inc();
                failures.push(format!(
                    "retry budget spent (retries are capped at {}% of requests)",
                    state.cfg.retry_budget.ratio * 100.0
                ));
                break 'rounds;
            }
            attempts += 1;
            tried = true;
            let began = Instant::now();
            match try_backend(client, rs, backend, up, &out, slot).await {
                Ok(resp) => {
                    up.health.success();
                    bm.ok.inc();
                    if attempts > 1 {
                        rs.metrics.failovers.inc();
                    }
                    let head = began.elapsed();
                    rs.metrics.first_byte.observe(head.as_secs_f64());
                    rs.recent.observe(head.as_secs_f64());
                    elsewhere += head;
                    rs.metrics
                        .overhead
                        .observe(received.elapsed().saturating_sub(elsewhere).as_secs_f64());
                    tracing::info!(
                        "gateway: {model} -> {}: {} after {attempts} {}, first byte in {:.1} ms",
                        backend.url,
                        resp.status().as_u16(),
                        if attempts == 1 { "try" } else { "tries" },
                        head.as_secs_f64() * 1000.0
                    );
                    return resp;
                }
                Err(why) => {
                    elsewhere += began.elapsed();
                    if up.health.failure(why.ejection()) {
                        up.metrics.ejections.inc();
                        up.metrics.up.set(0);
                    }
                    bm.failed_over.inc();
                    up.metrics.failure(why.label());
                    tracing::info!(
                        "gateway: {model} via {}: {why}; trying the next backend",
                        backend.url
                    );
                    failures.push(format!("{}: {why}", backend.url));
                }
            }
        }
        if !tried {
            // Every backend is full: wait in the route's queue for a slot, then look again.
            let Some(_place) = Waiting::enter(
                &rs.waiting,
                &rs.metrics.queue_depth,
                route.max_queue,
                &state.slot_freed,
            ) else {
                return overloaded(
                    route,
                    rs,
                    &format!("{} requests already wait", route.max_queue),
                );
            };
            // The second look: a slot freed before this request was counted as waiting
            // woke nobody.
            let room = admitted.iter().any(|&bi| {
                rs.backends[bi]
                    .0
                    .in_flight
                    .has_room(route.backends[bi].max_concurrency)
            });
            if room {
                continue;
            }
            let began = Instant::now();
            tokio::select! {
                _ = freed => {}
                _ = tokio::time::sleep_until(queue_by) => {
                    return overloaded(route, rs, &format!("no slot freed within queue_timeout ({:?})", route.queue_timeout.0));
                }
            }
            elsewhere += began.elapsed();
            continue;
        }
        round += 1;
    }
    rs.metrics.exhausted.inc();
    tracing::info!(
        "gateway: {model}: failed after {attempts} tries: {}",
        failures.join("; ")
    );
    if Instant::now() >= deadline {
        return error(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "no backend of \"{model}\" answered within total ({:?}): {}",
                route.total(),
                failures.join("; ")
            ),
        );
    }
    error(
        StatusCode::BAD_GATEWAY,
        "upstream_error",
        format!(
            "no backend of \"{model}\" answered: {}",
            failures.join("; ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_back_off_exponentially_with_jitter() {
        let base = Duration::from_millis(100);
        for _ in 0..100 {
            let first = round_backoff(base, 1);
            let third = round_backoff(base, 3);
            assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first));
            assert!((Duration::from_millis(200)..=Duration::from_millis(400)).contains(&third));
        }
    }
}
