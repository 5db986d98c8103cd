//! The JSON API's reads under `/api/v1/`: services (as `steward ps --json` has them, with
//! their GPU memory), an instance's log tail, queues, jobs and one job with every attempt,
//! the gateway, recent events, the node and the fleet. The types are those the CLI's
//! `--json` prints.

use crate::reply::{error, json, Refusal, Reply};
use crate::sse::event_json;
use crate::AgentView;
use hyper::StatusCode;
use serde_json::json;
use std::sync::Arc;
use steward_api::attribute_gpu_memory;
use steward_queue::{JobFilter, JobState, JobStore};

/// The most lines of a log, and jobs of a listing, one request returns.
const MAX_LOG_LINES: usize = 10_000;
const MAX_JOBS: usize = 1_000;

/// A request's query, decoded.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    fn number(&self, key: &str, default: usize, max: usize) -> Result<usize, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) => Ok(n.min(max)),
                Err(_) => Err(format!(
                    "{key}={v:?} is not a number; give a count such as {key}={default}"
                )),
            },
        }
    }

    /// The job filter `queue=`, `state=` and `q=` describe.
    pub fn job_filter(&self) -> Result<JobFilter, String> {
        Ok(JobFilter {
            queue: self.get("queue").map(str::to_string),
            state: self.get("state").map(str::parse::<JobState>).transpose()?,
            text: self.get("q").map(str::to_string),
            limit: Some(self.number("limit", 100, MAX_JOBS)?),
        })
    }
}

pub fn services(view: &dyn AgentView) -> Reply {
    let services = view.services();
    let gpu = attribute_gpu_memory(&services, &view.gpu_processes());
    json(
        StatusCode::OK,
        &json!({ "agent": view.agent(), "services": services, "gpu_memory": gpu }),
    )
}

pub fn logs(view: &dyn AgentView, name: &str, q: &Query) -> Reply {
    let tail = match q.number("tail", 200, MAX_LOG_LINES) {
        Ok(n) => n,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    if !view.services().iter().any(|s| s.name == name) {
        return no_service(view, name);
    }
    match view.log_tail(name, tail) {
        Ok(text) => json(
            StatusCode::OK,
            &json!({ "service": name, "tail": tail, "text": text }),
        ),
        Err(why) => error(StatusCode::NOT_FOUND, &why),
    }
}

pub fn no_service(view: &dyn AgentView, name: &str) -> Reply {
    let known: Vec<String> = view.services().into_iter().map(|s| s.name).collect();
    error(
        StatusCode::NOT_FOUND,
        &format!(
            "no service instance named {name:?}; there are: {}",
            known.join(", ")
        ),
    )
}

fn store_or_404(view: &dyn AgentView) -> Result<Arc<dyn JobStore>, Refusal> {
    view.store().ok_or_else(|| {
        Refusal(
            StatusCode::NOT_FOUND,
            "this agent has no queue open (no [pipelines], or the shared queue does not answer yet)".into(),
        )
    })
}

fn queue_error(e: steward_queue::QueueError) -> Reply {
    error(StatusCode::SERVICE_UNAVAILABLE, &format!("the queue: {e}"))
}

/// Each of the agent's queues' stats, in config order; `None` while no queue is open.
pub async fn queue_stats(
    view: &dyn AgentView,
) -> Option<Result<Vec<steward_queue::Stats>, steward_queue::QueueError>> {
    let store = view.store()?;
    let mut out = Vec::new();
    for q in view.queues() {
        match store.stats(Some(&q)).await {
            Ok(s) => out.push(s),
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok(out))
}

pub async fn queues(view: &dyn AgentView) -> Reply {
    match (queue_stats(view).await, view.store()) {
        (Some(Ok(out)), Some(store)) => json(
            StatusCode::OK,
            &json!({ "open": true, "store": store.describe(), "queues": out }),
        ),
        (Some(Err(e)), _) => queue_error(e),
        _ => json(StatusCode::OK, &json!({ "open": false, "queues": [] })),
    }
}

pub async fn jobs(view: &dyn AgentView, q: &Query) -> Reply {
    let filter = match q.job_filter() {
        Ok(f) => f,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    let store = match store_or_404(view) {
        Ok(s) => s,
        Err(r) => return r.reply(),
    };
    match store.list(&filter).await {
        Ok(jobs) => json(StatusCode::OK, &json!({ "jobs": jobs })),
        Err(e) => queue_error(e),
    }
}

pub fn job_id(text: &str) -> Result<i64, Refusal> {
    text.parse::<i64>().map_err(|_| {
        Refusal(
            StatusCode::BAD_REQUEST,
            format!(
                "{text:?} is not a job id; ids are numbers, as `steward queue list` shows them"
            ),
        )
    })
}

pub async fn job(view: &dyn AgentView, id: &str) -> Reply {
    let id = match job_id(id) {
        Ok(id) => id,
        Err(r) => return r.reply(),
    };
    let store = match store_or_404(view) {
        Ok(s) => s,
        Err(r) => return r.reply(),
    };
    match store.get(id).await {
        Ok(Some((job, attempts))) => {
            // Each attempt with explain's reading of the output it left.
            let attempts: Vec<serde_json::Value> = attempts
                .iter()
                .map(|a| {
                    let mut v = serde_json::to_value(a).unwrap_or_default();
                    let finding = a
                        .stderr_tail
                        .as_deref()
                        .and_then(|t| steward_explain::explain_text(t.as_bytes()).one_line());
                    if let Some(o) = v.as_object_mut() {
                        o.insert("explain".into(), finding.into());
                        o.insert(
                            "class_text".into(),
                            a.class.as_ref().map(|c| c.to_string()).into(),
                        );
                    }
                    v
                })
                .collect();
            json(StatusCode::OK, &json!({ "job": job, "attempts": attempts }))
        }
        Ok(None) => error(StatusCode::NOT_FOUND, &format!("there is no job {id}")),
        Err(e) => queue_error(e),
    }
}

pub fn gateway(view: &dyn AgentView) -> Reply {
    match view.gateway() {
        Some(g) => json(StatusCode::OK, &json!({ "routes": g.routes })),
        None => error(StatusCode::NOT_FOUND, "this agent runs no [gateway]"),
    }
}

pub fn recent_events(view: &dyn AgentView) -> Reply {
    let events: Vec<serde_json::Value> = view.recent_events().iter().map(event_json).collect();
    json(StatusCode::OK, &json!({ "events": events }))
}

pub async fn fleet(view: &dyn AgentView) -> Reply {
    let store = match store_or_404(view) {
        Ok(s) => s,
        Err(r) => return r.reply(),
    };
    match store.nodes(view.node_ttl()).await {
        Ok(nodes) => json(StatusCode::OK, &json!({ "nodes": nodes })),
        Err(e) => queue_error(e),
    }
}
