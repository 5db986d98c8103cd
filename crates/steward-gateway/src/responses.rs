//! What the gateway answers itself: errors in OpenAI's JSON shape (so clients' error
//! handling works unchanged), JSON bodies, and the SSE event that ends a broken stream.

use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use std::convert::Infallible;

pub type Body = BoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// `{"error": {"message", "type", "code"}}` with `status`.
pub fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response<Body> {
    let body = serde_json::json!({ "error": { "message": message.into(), "type": kind, "code": status.as_u16() } });
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body.to_string()))
        .unwrap_or_else(|_| Response::new(full("")))
}

/// The SSE event that ends a stream whose backend failed after the first byte.
pub fn sse_error(message: &str) -> Bytes {
    let body = serde_json::json!({ "error": { "message": message, "type": "upstream_error", "code": 502 } });
    Bytes::from(format!("data: {body}\n\n"))
}

/// `status` with a JSON body.
pub fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(v.to_string()))
        .unwrap_or_else(|_| Response::new(full("")))
}
