use crate::{Request, Response};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;
use steward_config::StateDir;
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

/// How often the socket file is checked: deleted (by a clean-up script, say), it is made
/// again, so the agent never becomes unreachable.
const SOCKET_CHECK: Duration = Duration::from_secs(2);

/// The inode of the socket file, to tell ours from a file put in its place.
fn socket_inode(state_dir: &StateDir) -> Option<u64> {
    std::fs::symlink_metadata(state_dir.socket())
        .ok()
        .map(|m| m.ino())
}

/// Accepts connections until the agent drops `requests`' receiver. Each line is one
/// request; each gets one reply line. On the way out it waits (briefly) for the
/// connections still open, so a reply already handed over (the one to `down`) is written.
pub async fn serve(
    mut listener: UnixListener,
    state_dir: StateDir,
    requests: mpsc::Sender<Incoming>,
) {
    let mut connections = JoinSet::new();
    let mut ours = socket_inode(&state_dir);
    let mut check = tokio::time::interval(SOCKET_CHECK);
    loop {
        let stream = tokio::select! {
            _ = check.tick() => {
                if socket_inode(&state_dir) != ours {
                    match crate::bind_socket(&state_dir) {
                        Ok(fresh) => {
                            tracing::warn!("the control socket {} was removed; made it again", state_dir.socket().display());
                            listener = fresh;
                            ours = socket_inode(&state_dir);
                        }
                        Err(e) => tracing::warn!("the control socket is gone and cannot be made again: {e}"),
                    }
                }
                continue;
            }
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
