//! What a health endpoint's answer means, for a service's `http` check and for a gateway
//! backend's probe alike: 2xx is up; 503 is alive but not ready yet (llama.cpp and vLLM
//! answer it while a model loads); anything else, 404 included, is down.

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::StatusCode;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Up,
    /// Alive, not ready: not routed to, and not counted as a failure while starting.
    Loading,
    Down(String),
}

pub fn verdict(status: StatusCode) -> Verdict {
    if status.is_success() {
        Verdict::Up
    } else if status == StatusCode::SERVICE_UNAVAILABLE {
        Verdict::Loading
    } else {
        Verdict::Down(format!("answered {status}"))
    }
}

/// `GET http://host:port/path` on a fresh connection, within `timeout`: the status, or
/// why there is none.
pub async fn get_status(
    host: &str,
    port: u16,
    path: &str,
    timeout: Duration,
) -> Result<StatusCode, String> {
    let ask = async {
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| e.to_string())?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io)
            .await
            .map_err(|e| crate::one_line(&e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .header(hyper::header::USER_AGENT, "steward-health")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        sender
            .send_request(req)
            .await
            .map(|r| r.status())
            .map_err(|e| crate::one_line(&e))
    };
    match tokio::time::timeout(timeout, ask).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_every_prober() {
        assert_eq!(verdict(StatusCode::OK), Verdict::Up);
        assert_eq!(verdict(StatusCode::NO_CONTENT), Verdict::Up);
        assert_eq!(verdict(StatusCode::SERVICE_UNAVAILABLE), Verdict::Loading);
        assert!(matches!(verdict(StatusCode::NOT_FOUND), Verdict::Down(_)));
        assert!(matches!(
            verdict(StatusCode::INTERNAL_SERVER_ERROR),
            Verdict::Down(_)
        ));
    }
}
