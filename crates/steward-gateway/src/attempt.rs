//! One try of a request on one backend. It fails (a [`TryError`]) while nothing has
//! reached the client, so the request can still move on; after that, a failure ends a
//! stream with an SSE error event. A stream's first byte is its first data event; a
//! non-streaming answer is read whole and checked to be JSON before any of it is sent.

use crate::responses::{full, sse_error, Body};
use crate::slots::Slot;
use crate::state::{RouteState, Upstream, UpstreamClient};
use crate::try_error::TryError;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
use std::time::Duration;
use steward_config::Backend;
use steward_net::ChannelBody;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What every try of one request sends.
pub(crate) struct Outgoing<'a> {
    pub path: &'a str,
    /// The request's `model`, as the client named it.
    pub model: &'a str,
    pub body: &'a Bytes,
    pub stream: bool,
    pub received: Instant,
    pub deadline: Instant,
}

/// Largest answer buffered whole (a non-streaming completion or a batch of embeddings).
const MAX_ANSWER: usize = 256 << 20;

/// Whether an SSE chunk holds a data event (not only `: ping` comments).
fn has_data_event(chunk: &[u8]) -> bool {
    chunk.starts_with(b"data:") || chunk.windows(6).any(|w| w == b"\ndata:")
}

pub(crate) async fn try_backend(
    client: &UpstreamClient,
    rs: &RouteState,
    backend: &Backend,
    up: &Upstream,
    out: &Outgoing<'_>,
    slot: Slot,
) -> Result<Response<Body>, TryError> {
    let bytes = match &backend.model {
        // Renaming the model is the one case that needs the body as a tree.
        Some(m) => {
            let mut v: serde_json::Value = serde_json::from_slice(out.body)
                .map_err(|e| TryError::Send(format!("the body cannot be rewritten: {e}")))?;
            v["model"] = serde_json::Value::String(m.clone());
            Bytes::from(v.to_string())
        }
        None => out.body.clone(),
    };
    let uri = up
        .uri(out.path)
        .ok_or_else(|| TryError::Send(format!("{}{} is not a URI", backend.url, out.path)))?;
    let req = Request::post(uri)
        .header(CONTENT_TYPE, APPLICATION_JSON)
        .body(Full::new(bytes))
        .map_err(|e| TryError::Send(e.to_string()))?;
    let first_byte = backend.timeouts.first_byte.0;
    let head_by = out.deadline.min(Instant::now() + first_byte);
    let resp = match tokio::time::timeout_at(head_by, client.request(req)).await {
        Err(_) => return Err(TryError::HeadTimeout(first_byte)),
        Ok(Err(e)) => return Err(TryError::from_client(&e, backend.timeouts.connect.0)),
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        // Honour Retry-After: no request goes there before it has passed.
        let wait = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(Duration::from_secs(1), Duration::from_secs);
        up.health.hold_off(wait.min(Duration::from_secs(300)));
        return Err(TryError::RetryAfter(wait));
    }
    if status.is_server_error() {
        return Err(TryError::Status(status));
    }
    let content_type = resp.headers().get("content-type").cloned();
    let is_sse = content_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut upstream = resp.into_body();
    if !out.stream && status.is_success() {
        return whole_json(backend, rs, out, upstream, status, content_type, slot).await;
    }
    // A stream's first byte is its first data event: until one comes, nothing has gone to
    // the client and the request can still move on. `: ping` comments before it are kept.
    let mut early = Vec::new();
    if out.stream && is_sse {
        loop {
            match tokio::time::timeout_at(head_by, upstream.frame()).await {
                Err(_) => return Err(TryError::NoDataEvent(first_byte)),
                Ok(Some(Err(e))) => return Err(TryError::Broken(steward_net::one_line(&e))),
                Ok(None) => break,
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        let data_event = has_data_event(&data);
                        early.push(data);
                        if data_event {
                            break;
                        }
                    }
                }
            }
        }
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let idle = backend.timeouts.idle.0;
    let (name, stream, deadline) = (backend.name.clone(), out.stream, out.deadline);
    let model = out.model.to_string();
    let (received, total) = (out.received, rs.metrics.total.clone());
    tokio::spawn(async move {
        let _slot = slot; // held until the body has been passed on
        for chunk in early {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
        loop {
            let by = deadline.min(Instant::now() + idle);
            match tokio::time::timeout_at(by, upstream.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        if tx.send(data).await.is_err() {
                            return; // the client left: dropping `upstream` cancels the request
                        }
                    }
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    let why = format!(
                        "backend {name} failed mid-stream: {}",
                        steward_net::one_line(&e)
                    );
                    tracing::info!(
                        "gateway: {model} -> {name}: failed after its first byte: {why}"
                    );
                    if stream {
                        let _ = tx.send(sse_error(&why)).await;
                    }
                    break;
                }
                Err(_) => {
                    let why = format!("backend {name} sent nothing for {idle:?} (idle timeout) or the total timeout passed");
                    tracing::info!(
                        "gateway: {model} -> {name}: failed after its first byte: {why}"
                    );
                    if stream {
                        let _ = tx.send(sse_error(&why)).await;
                    }
                    break;
                }
            }
        }
        total.observe(received.elapsed().as_secs_f64());
    });
    let mut builder = Response::builder()
        .status(status)
        .header("x-steward-backend", backend.name.as_str());
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    builder
        .body(ChannelBody(rx).boxed())
        .map_err(|e| TryError::Broken(e.to_string()))
}

/// A non-streaming answer, read whole (within `idle` between chunks and `total`) and
/// checked to be JSON before any of it goes to the client: a backend that answers garbage
/// fails over like one that answers 5xx, instead of handing the garbage on.
async fn whole_json(
    backend: &Backend,
    rs: &RouteState,
    out: &Outgoing<'_>,
    mut upstream: Incoming,
    status: StatusCode,
    content_type: Option<hyper::header::HeaderValue>,
    slot: Slot,
) -> Result<Response<Body>, TryError> {
    let idle = backend.timeouts.idle.0;
    // The chunks as they came: most answers are one, passed on without a copy.
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0;
    loop {
        let by = out.deadline.min(Instant::now() + idle);
        match tokio::time::timeout_at(by, upstream.frame()).await {
            Err(_) => return Err(TryError::Stalled(idle)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(TryError::Broken(steward_net::one_line(&e))),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    len += data.len();
                    if len > MAX_ANSWER {
                        return Err(TryError::TooLarge(MAX_ANSWER));
                    }
                    chunks.push(data);
                }
            }
        }
    }
    drop(slot);
    let bytes = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => Bytes::from(chunks.concat()),
    };
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        let start = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
        return Err(TryError::NotJson {
            status,
            error: e.to_string(),
            start,
        });
    }
    rs.metrics
        .total
        .observe(out.received.elapsed().as_secs_f64());
    let mut builder = Response::builder()
        .status(status)
        .header("x-steward-backend", backend.name.as_str());
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    builder
        .body(full(bytes))
        .map_err(|e| TryError::Broken(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::has_data_event;

    #[test]
    fn only_data_lines_count_as_a_streams_first_byte() {
        assert!(!has_data_event(b": ping\n\n"));
        assert!(has_data_event(b"data: {}\n\n"));
        assert!(has_data_event(b": ping\n\ndata: {}\n\n"));
    }
}
