//! `/api/v1/events`: Server-Sent Events. First the latest events, then each one as it
//! happens (`event: steward`), a `changed` event (debounced) whenever an instance's state
//! changes so a page knows to read `/api/v1/services` again, and a comment every 15 s to
//! keep proxies from closing an idle stream. It ends with the agent's shutdown.

use crate::reply::{Body, Reply};
use crate::AgentView;
use http_body_util::BodyExt;
use hyper::body::Bytes;
use std::sync::Arc;
use std::time::Duration;
use steward_events::Event;
use steward_net::ChannelBody;
use tokio::sync::{broadcast, mpsc, watch};

/// How many of the latest events a new stream starts with.
const REPLAY: usize = 200;

/// One event as the stream and `/api/v1/events?recent` carry it: the event's fields,
/// with its one-line summary.
pub fn event_json(e: &Event) -> serde_json::Value {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("summary".into(), e.summary().into());
    }
    v
}

fn frame(kind: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

pub fn stream(view: Arc<dyn AgentView>, mut shutdown: watch::Receiver<bool>) -> Reply {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut events = view.subscribe_events();
    let mut changes = view.changes();
    let recent = view.recent_events();
    tokio::spawn(async move {
        let skip = recent.len().saturating_sub(REPLAY);
        for e in &recent[skip..] {
            if tx.send(frame("steward", &event_json(e))).await.is_err() {
                return;
            }
        }
        if tx
            .send(Bytes::from_static(b": replayed\n\n"))
            .await
            .is_err()
        {
            return;
        }
        let mut keepalive = tokio::time::interval(Duration::from_secs(15));
        keepalive.tick().await;
        loop {
            let out = tokio::select! {
                _ = steward_net::stopped(&mut shutdown) => return,
                e = events.recv() => match e {
                    Ok(e) => frame("steward", &event_json(&e)),
                    Err(broadcast::error::RecvError::Lagged(n)) => frame("lagged", &serde_json::json!({"skipped": n})),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                c = changes.changed() => {
                    if c.is_err() { return; }
                    // Many changes at once (a restart of 1,000 replicas) make one message.
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    changes.borrow_and_update();
                    frame("changed", &serde_json::json!({}))
                }
                _ = keepalive.tick() => Bytes::from_static(b": keep-alive\n\n"),
            };
            if tx.send(out).await.is_err() {
                return; // the client went away
            }
        }
    });
    let mut r = hyper::Response::new(BodyExt::boxed(ChannelBody(rx)) as Body);
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}
