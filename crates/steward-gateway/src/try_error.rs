//! Why one try of a request on one backend failed. The type decides what follows: whether
//! the backend is ejected at once, which metric label counts it, and the words a client
//! and the log get.

use crate::health::Failed;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryError {
    /// Nothing listens there: ejected at once.
    ConnectRefused,
    /// The connection was not made within `connect`.
    ConnectTimeout(Duration),
    /// Any other failure to connect (unreachable, DNS).
    Connect(String),
    /// Connected, but sending the request failed (the connection was reset or closed).
    Send(String),
    /// No response head within `first_byte`.
    HeadTimeout(Duration),
    /// A 5xx answer.
    Status(hyper::StatusCode),
    /// 429: the backend asked for a pause of this long.
    RetryAfter(Duration),
    /// A stream that said 200 but sent no data event within `first_byte`.
    NoDataEvent(Duration),
    /// The answer broke off before any of it reached the client.
    Broken(String),
    /// The answer stalled for `idle`, or ran past `total`.
    Stalled(Duration),
    /// A non-streaming answer that is not JSON; `start` is what it began with.
    NotJson {
        status: hyper::StatusCode,
        error: String,
        start: String,
    },
    /// A non-streaming answer larger than the gateway buffers.
    TooLarge(usize),
}

impl TryError {
    /// From hyper's client error: refused, timed out, or otherwise.
    pub fn from_client(e: &hyper_util::client::legacy::Error, connect: Duration) -> TryError {
        let text = steward_net::one_line(e);
        if !e.is_connect() {
            return TryError::Send(text);
        }
        let io_kind = std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |e| {
            e.source()
        })
        .find_map(|e| e.downcast_ref::<std::io::Error>().map(|io| io.kind()));
        match io_kind {
            Some(std::io::ErrorKind::ConnectionRefused) => TryError::ConnectRefused,
            Some(std::io::ErrorKind::TimedOut) => TryError::ConnectTimeout(connect),
            _ if text.contains("timed out") => TryError::ConnectTimeout(connect),
            _ => TryError::Connect(text),
        }
    }

    /// What the failure says of the backend: unreachable and hanging ones are ejected at
    /// once, one that answers badly after a few in a row.
    pub fn ejection(&self) -> Failed {
        match self {
            TryError::ConnectRefused | TryError::Connect(_) => Failed::Unreachable,
            TryError::ConnectTimeout(_)
            | TryError::HeadTimeout(_)
            | TryError::NoDataEvent(_)
            | TryError::Stalled(_) => Failed::Timeout,
            _ => Failed::Error,
        }
    }

    /// The `reason` label of `steward_gateway_backend_failures_total`.
    pub fn label(&self) -> &'static str {
        match self {
            TryError::ConnectRefused => "connect_refused",
            TryError::ConnectTimeout(_) => "connect_timeout",
            TryError::Connect(_) => "connect_error",
            TryError::Send(_) => "send_error",
            TryError::HeadTimeout(_) => "head_timeout",
            TryError::Status(_) => "status_5xx",
            TryError::RetryAfter(_) => "too_many_requests",
            TryError::NoDataEvent(_) => "no_data_event",
            TryError::Broken(_) => "broken",
            TryError::Stalled(_) => "stalled",
            TryError::NotJson { .. } => "not_json",
            TryError::TooLarge(_) => "too_large",
        }
    }

    /// Every label, so their series exist from the start.
    pub const LABELS: [&'static str; 12] = [
        "connect_refused",
        "connect_timeout",
        "connect_error",
        "send_error",
        "head_timeout",
        "status_5xx",
        "too_many_requests",
        "no_data_event",
        "broken",
        "stalled",
        "not_json",
        "too_large",
    ];
}

impl std::fmt::Display for TryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TryError::ConnectRefused => f.write_str("connection refused (nothing listens there)"),
            TryError::ConnectTimeout(d) => write!(f, "no connection within {d:?}"),
            TryError::Connect(why) => write!(f, "cannot connect: {why}"),
            TryError::Send(why) => write!(f, "the request could not be sent: {why}"),
            TryError::HeadTimeout(d) => write!(f, "no response head within {d:?}"),
            TryError::Status(s) => write!(f, "answered {s}"),
            TryError::RetryAfter(d) => {
                write!(f, "answered 429 Too Many Requests (retry after {d:?})")
            }
            TryError::NoDataEvent(d) => write!(f, "no data event within {d:?}"),
            TryError::Broken(why) => write!(f, "its answer broke off: {why}"),
            TryError::Stalled(d) => write!(
                f,
                "its answer stalled for {d:?} (idle timeout) or ran past total"
            ),
            TryError::NotJson {
                status,
                error,
                start,
            } => {
                write!(
                    f,
                    "answered {status} with a body that is not JSON ({error}): {start:?}"
                )
            }
            TryError::TooLarge(n) => write!(f, "its answer is larger than {n} bytes"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Failed, TryError};

    #[test]
    fn every_error_has_a_listed_label() {
        let all = [
            TryError::ConnectRefused,
            TryError::ConnectTimeout(Default::default()),
            TryError::Connect(String::new()),
            TryError::Send(String::new()),
            TryError::HeadTimeout(Default::default()),
            TryError::Status(hyper::StatusCode::BAD_GATEWAY),
            TryError::RetryAfter(Default::default()),
            TryError::NoDataEvent(Default::default()),
            TryError::Broken(String::new()),
            TryError::Stalled(Default::default()),
            TryError::NotJson {
                status: hyper::StatusCode::OK,
                error: String::new(),
                start: String::new(),
            },
            TryError::TooLarge(1),
        ];
        for e in &all {
            assert!(TryError::LABELS.contains(&e.label()), "{e:?}");
        }
        assert_eq!(all.len(), TryError::LABELS.len());
        assert_eq!(TryError::ConnectRefused.ejection(), Failed::Unreachable);
        assert_eq!(
            TryError::HeadTimeout(Default::default()).ejection(),
            Failed::Timeout
        );
        assert_eq!(
            TryError::Status(hyper::StatusCode::BAD_GATEWAY).ejection(),
            Failed::Error
        );
    }
}
