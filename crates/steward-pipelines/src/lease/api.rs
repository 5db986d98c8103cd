//! The lease API. All endpoints are POST with a JSON body (at most 1 MiB; bad JSON is 400).
//! Every request carries its replica's secret, `Authorization: Bearer $STEWARD_TOKEN`
//! (401 without it): the token says which replica asks, so no other local process can take
//! or finish jobs. Every job action names the attempt it leased, so an answer from a lost
//! lease changes nothing (409):
//! - `/v1/queues/{queue}/lease?wait=30s`: a job as JSON, or 204 after `wait`;
//! - `/v1/jobs/{id}/heartbeat`, `/progress` (`{"progress": 0.5, "message": "…"}`),
//!   `/complete`, `/fail` (`{"error": "…"}`), each with `"attempt": N`.

use super::broker::{LeaseBroker, LEASE_TTL};
use crate::readable::unreadable_here;
use crate::reporter::{cannot_run, failure};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::json;
use std::time::Duration;
use steward_events::ExitClass;
use steward_net::{json_reply, Reply};
use steward_queue::Lease;
use tokio::time::Instant;

/// The longest long-poll a worker may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// The largest request body.
const MAX_BODY: usize = 1 << 20;
/// A body must arrive within this.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

fn refuse(status: StatusCode, why: impl Into<String>) -> Reply {
    json_reply(status, &json!({ "error": why.into() }))
}

pub(super) async fn handle(broker: &LeaseBroker, req: Request<Incoming>) -> Reply {
    if req.method() != Method::POST {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "use POST");
    }
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let Some(worker) = broker.replica_of_token(token).map(str::to_string) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send Authorization: Bearer $STEWARD_TOKEN (each worker replica has its own)",
        );
    };
    // An older client names itself too; it must be the replica the token is for.
    if let Some(named) = req
        .headers()
        .get("x-steward-worker")
        .and_then(|v| v.to_str().ok())
    {
        if named != worker {
            return refuse(
                StatusCode::FORBIDDEN,
                format!("this token is {worker}'s, not {named}'s"),
            );
        }
    }
    let owner = broker.owner(&worker);
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let body = match steward_net::read_body(
        req.into_body(),
        MAX_BODY,
        Instant::now() + BODY_TIMEOUT,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => return refuse(e.status(), e.to_string()),
    };
    let json: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not JSON: {e}"),
                )
            }
        }
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["v1", "queues", queue, "lease"] => lease(broker, queue, &owner, &query).await,
        ["v1", "jobs", id, action] => {
            let Ok(id) = id.parse::<i64>() else {
                return refuse(StatusCode::BAD_REQUEST, format!("{id} is not a job id"));
            };
            let Some(attempt) = json.get("attempt").and_then(|a| a.as_u64()) else {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "the body needs \"attempt\": the attempt number the lease gave",
                );
            };
            let held = Lease {
                job: id,
                attempt: attempt.min(u32::MAX as u64) as u32,
                owner,
            };
            job_action(broker, &held, action, &json).await
        }
        _ => refuse(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    }
}

async fn lease(broker: &LeaseBroker, queue: &str, owner: &str, query: &str) -> Reply {
    if !broker.runners.contains_key(queue) {
        let known: Vec<&str> = broker.runners.keys().map(String::as_str).collect();
        return refuse(
            StatusCode::NOT_FOUND,
            format!(
                "no lease-mode pipeline takes jobs from queue {queue:?}; these do: {}",
                known.join(", ")
            ),
        );
    }
    let wait = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("wait="))
        .and_then(|w| humantime::parse_duration(w).ok())
        .unwrap_or(Duration::ZERO)
        .min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    loop {
        match broker.store.lease(queue, owner, LEASE_TTL).await {
            Ok(Some(job)) => {
                if let Some(why) = job.input_path().and_then(|i| unreadable_here(&i, owner)) {
                    // Failed here, per the retry policy, so that another node can take it.
                    if let Some(runner) = broker.runners.get(queue) {
                        runner
                            .reporter
                            .report(&job, Err(cannot_run(&why)), false)
                            .await;
                    }
                    continue;
                }
                return json_reply(
                    StatusCode::OK,
                    &json!({
                        "id": job.id,
                        "attempt": job.attempts,
                        "input": job.input(),
                        // A name that is not UTF-8, byte for byte: the client decodes it
                        // as the OS would (Python: os.fsdecode).
                        "input_hex": job.payload.get("input_hex"),
                        "payload": job.payload,
                        "lease_ttl_ms": LEASE_TTL.as_millis() as u64,
                    }),
                );
            }
            Ok(None) => {}
            Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
        if Instant::now() >= deadline {
            let mut none = Reply::new(Default::default());
            *none.status_mut() = StatusCode::NO_CONTENT;
            return none;
        }
        // A retry's backoff or a new enqueue can make a job ready without a wake-up.
        let _ = tokio::time::timeout_at(
            deadline.min(Instant::now() + Duration::from_millis(200)),
            broker.wake.notified(),
        )
        .await;
    }
}

fn lost() -> Reply {
    refuse(
        StatusCode::CONFLICT,
        "this worker does not hold that job's lease (it expired, was taken back, or is for another attempt)",
    )
}

async fn job_action(
    broker: &LeaseBroker,
    held: &Lease,
    action: &str,
    json: &serde_json::Value,
) -> Reply {
    let store = &broker.store;
    let answer = match action {
        "heartbeat" => store.heartbeat(held, LEASE_TTL).await,
        "progress" => {
            let value = json["progress"].as_f64().unwrap_or(0.0);
            let message = json["message"].as_str().map(str::to_string);
            store.progress(held, value, message).await
        }
        "complete" | "fail" => {
            let job = match store.get(held.job).await {
                Ok(Some((job, _))) if job.lease().as_ref() == Some(held) => job,
                Ok(_) => return lost(),
                Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            };
            let Some(runner) = broker.runners.get(&job.queue) else {
                return lost();
            };
            let outcome = if action == "complete" {
                // As for a per-job process: done means the output is there.
                match missing_output(runner.pipeline(), &job) {
                    None => Ok(()),
                    Some(why) => {
                        runner
                            .reporter
                            .report(
                                &job,
                                Err(failure(
                                    ExitClass::Reported { error: why.clone() },
                                    &why,
                                    None,
                                )),
                                false,
                            )
                            .await;
                        broker.wake.notify_waiters();
                        return refuse(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            format!("not completed: {why}; the attempt counts as failed"),
                        );
                    }
                }
            } else {
                let error = json["error"]
                    .as_str()
                    .unwrap_or("the worker reported a failure")
                    .to_string();
                Err(failure(
                    ExitClass::Reported {
                        error: error.clone(),
                    },
                    &error,
                    None,
                ))
            };
            let recorded = runner.reporter.report(&job, outcome, false).await;
            broker.wake.notify_waiters();
            Ok(recorded)
        }
        other => {
            return refuse(
                StatusCode::NOT_FOUND,
                format!("no action {other:?}; use heartbeat, progress, complete or fail"),
            )
        }
    };
    match answer {
        Ok(true) => json_reply(StatusCode::OK, &json!({ "ok": true })),
        Ok(false) => lost(),
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Why a completed job is not done: its `expect_output` is missing or empty.
fn missing_output(p: &steward_config::Pipeline, job: &steward_queue::Job) -> Option<String> {
    let pattern = p.expect_output.as_deref()?;
    let input = job.input_path()?;
    let vars = steward_config::template::vars_for(&input, &p.output_dir, job.id, job.attempts);
    let out = std::path::PathBuf::from(steward_config::template::render(pattern, &vars).ok()?);
    if std::fs::metadata(&out).is_ok_and(|m| m.len() > 0) {
        return None;
    }
    Some(format!(
        "its output {} is missing or empty",
        steward_config::escaped_os(out.as_os_str())
    ))
}
