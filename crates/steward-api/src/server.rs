use crate::{Request, Response};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// A request handed to the agent, with where its reply goes.
pub type Incoming = (Request, oneshot::Sender<Response>);

/// Longest request line accepted; anything longer is refused, not buffered.
const MAX_LINE: usize = 64 * 1024;

/// How long a shutting-down server waits for connections to finish their replies.
const DRAIN: Duration = Duration::from_secs(2);

/// Accepts connections until the agent drops `requests`' receiver. Each line is one
/// request; each gets one reply line. On the way out it waits (briefly) for the
/// connections still open, so a reply already handed over (the one to `down`) is written.
pub async fn serve(listener: UnixListener, requests: mpsc::Sender<Incoming>) {
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("control socket: accept failed: {e}");
                    continue;
                }
            },
            _ = requests.closed() => break,
        };
        let requests = requests.clone();
        connections.spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read);
            let mut line = String::new();
            loop {
                line.clear();
                let mut limited = (&mut lines).take(MAX_LINE as u64 + 1);
                match limited.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let reply = if line.len() > MAX_LINE {
                    Response::error(format!("request longer than {MAX_LINE} bytes"))
                } else {
                    match serde_json::from_str::<Request>(&line) {
                        Err(e) => Response::error(format!("bad request: {e}")),
                        Ok(req) => {
                            let (tx, rx) = oneshot::channel();
                            if requests.send((req, tx)).await.is_err() {
                                Response::error("the agent is shutting down")
                            } else {
                                rx.await.unwrap_or_else(|_| {
                                    Response::error("the agent is shutting down")
                                })
                            }
                        }
                    }
                };
                let mut out = serde_json::to_vec(&reply).unwrap_or_default();
                out.push(b'\n');
                if write.write_all(&out).await.is_err() {
                    return;
                }
                if line.len() > MAX_LINE {
                    return;
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}
