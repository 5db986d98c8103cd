//! The API's actions (POST only; refused with `read_only`): start, stop and restart a
//! service instance; retry and cancel one job, or every job a filter matches.

use crate::api::{job_id, no_service, Query};
use crate::reply::{error, json, Refusal, Reply};
use crate::{AgentView, ServiceAction};
use hyper::StatusCode;
use serde_json::json;
use steward_queue::Selection;

pub async fn service(view: &dyn AgentView, name: &str, verb: &str) -> Reply {
    let action = match verb {
        "start" => ServiceAction::Start,
        "stop" => ServiceAction::Stop,
        "restart" => ServiceAction::Restart,
        other => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("no action {other:?} on a service; there are start, stop and restart"),
            )
        }
    };
    let services = view.services();
    if !services.iter().any(|s| s.name == name || s.service == name) {
        return no_service(view, name);
    }
    match view.act(action, name).await {
        Ok(()) => json(
            StatusCode::OK,
            &json!({ "ok": true, "service": name, "action": verb }),
        ),
        Err(why) => error(StatusCode::CONFLICT, &why),
    }
}

#[derive(Clone, Copy)]
enum JobAction {
    Retry,
    Cancel,
}

fn job_action(verb: &str) -> Result<JobAction, Refusal> {
    match verb {
        "retry" => Ok(JobAction::Retry),
        "cancel" => Ok(JobAction::Cancel),
        other => Err(Refusal(
            StatusCode::NOT_FOUND,
            format!("no action {other:?} on jobs; there are retry and cancel"),
        )),
    }
}

async fn apply(view: &dyn AgentView, action: JobAction, which: Selection) -> Result<u64, Refusal> {
    let Some(store) = view.store() else {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            "this agent has no queue open".into(),
        ));
    };
    let done = match action {
        JobAction::Retry => store.retry(which).await,
        JobAction::Cancel => store.cancel(which).await,
    };
    done.map_err(|e| Refusal(StatusCode::SERVICE_UNAVAILABLE, format!("the queue: {e}")))
}

/// `POST /api/v1/jobs/{id}/{retry|cancel}`.
pub async fn one_job(view: &dyn AgentView, id: &str, verb: &str) -> Reply {
    let (id, action) = match (job_id(id), job_action(verb)) {
        (Ok(id), Ok(a)) => (id, a),
        (Err(r), _) | (_, Err(r)) => return r.reply(),
    };
    match apply(view, action, Selection::Ids(vec![id])).await {
        Ok(0) => {
            let exists = match view.store() {
                Some(s) => s.get(id).await.ok().flatten().map(|(j, _)| j.state),
                None => None,
            };
            match exists {
                None => error(StatusCode::NOT_FOUND, &format!("there is no job {id}")),
                Some(state) => error(
                    StatusCode::CONFLICT,
                    &format!("job {id} is {state}: nothing to {verb} (retry takes a finished or waiting job, cancel one that has not finished)"),
                ),
            }
        }
        Ok(n) => json(StatusCode::OK, &json!({ "ok": true, "changed": n })),
        Err(r) => r.reply(),
    }
}

/// `POST /api/v1/jobs/{retry|cancel}?queue=&state=&q=`: every job the filter matches.
pub async fn matching_jobs(view: &dyn AgentView, verb: &str, q: &Query) -> Reply {
    let action = match job_action(verb) {
        Ok(a) => a,
        Err(r) => return r.reply(),
    };
    let mut filter = match q.job_filter() {
        Ok(f) => f,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    if filter.queue.is_none() && filter.state.is_none() && filter.text.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("say which jobs to {verb}: give queue=, state= or q= (every job at once is refused)"),
        );
    }
    filter.limit = None;
    match apply(view, action, Selection::Matching(filter)).await {
        Ok(n) => json(StatusCode::OK, &json!({ "ok": true, "changed": n })),
        Err(r) => r.reply(),
    }
}
