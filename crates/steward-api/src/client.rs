use crate::{ApiError, Request, Response};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use steward_config::StateDir;

/// A blocking client: the CLI makes one request and exits, so it needs no runtime.
pub struct Client {
    stream: UnixStream,
    state_dir: StateDir,
}

impl Client {
    pub fn connect(state_dir: &StateDir) -> Result<Client, ApiError> {
        let socket = state_dir.socket();
        match UnixStream::connect(&socket) {
            Ok(stream) => Ok(Client {
                stream,
                state_dir: state_dir.clone(),
            }),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Err(ApiError::NoAgent {
                    state_dir: state_dir.clone(),
                    socket,
                })
            }
            Err(source) => Err(ApiError::Io {
                what: "cannot connect to",
                path: socket,
                source,
            }),
        }
    }

    /// Sends one request and waits for its reply (a `stop` waits until the service is down).
    pub fn request(&mut self, req: &Request) -> Result<Response, ApiError> {
        let socket = self.state_dir.socket();
        let io = |source| ApiError::Io {
            what: "lost the connection to the agent at",
            path: socket.clone(),
            source,
        };
        let mut line = serde_json::to_vec(req).map_err(|e| ApiError::BadReply(e.to_string()))?;
        line.push(b'\n');
        self.stream.write_all(&line).map_err(io)?;
        let mut reply = String::new();
        BufReader::new(&self.stream)
            .read_line(&mut reply)
            .map_err(io)?;
        if reply.is_empty() {
            return Err(ApiError::BadReply(
                "the agent closed the connection without replying".into(),
            ));
        }
        let resp: Response =
            serde_json::from_str(&reply).map_err(|e| ApiError::BadReply(e.to_string()))?;
        if resp.ok {
            Ok(resp)
        } else {
            Err(ApiError::Agent(
                resp.error.unwrap_or_else(|| "the agent refused".into()),
            ))
        }
    }
}
