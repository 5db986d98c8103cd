//! Request bodies read within a size and a deadline, and JSON replies.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Response, StatusCode};
use tokio::time::Instant;

/// Why a body could not be read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the limit (413).
    TooLarge { limit: usize },
    /// Not all there by the deadline (408).
    TimedOut,
    /// The connection broke while it was read.
    Broken(String),
}

impl BodyError {
    /// The status a server answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TimedOut => StatusCode::REQUEST_TIMEOUT,
            BodyError::Broken(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge { limit } => {
                write!(f, "the body is larger than the limit ({limit} bytes)")
            }
            BodyError::TimedOut => f.write_str("the body did not arrive in time"),
            BodyError::Broken(why) => write!(f, "the body could not be read: {why}"),
        }
    }
}

/// Reads the whole body, refusing more than `limit` bytes and anything not there by `by`.
pub async fn read_body(body: Incoming, limit: usize, by: Instant) -> Result<Bytes, BodyError> {
    match tokio::time::timeout_at(by, Limited::new(body, limit).collect()).await {
        Err(_) => Err(BodyError::TimedOut),
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(BodyError::TooLarge { limit })
        }
        Ok(Err(e)) => Err(BodyError::Broken(e.to_string())),
    }
}

/// A reply with a whole body.
pub type Reply = Response<Full<Bytes>>;

/// `status` with a JSON body.
pub fn json_reply(status: StatusCode, body: &serde_json::Value) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
