//! The pump: copies a run's output from its pipe into its log files until every writer
//! has closed the pipe (the main process and any child that kept its stdout).

use super::files::LogFiles;
use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncReadExt;

/// The last bytes a process wrote, kept in memory for its failure report.
#[derive(Clone)]
pub struct Tail {
    bytes: Arc<Mutex<VecDeque<u8>>>,
    max: usize,
}

impl Tail {
    pub fn new(max: usize) -> Self {
        Tail {
            bytes: Arc::new(Mutex::new(VecDeque::with_capacity(max))),
            max,
        }
    }

    fn push(&self, buf: &[u8]) {
        let mut t = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        t.extend(buf);
        let excess = t.len().saturating_sub(self.max);
        t.drain(..excess);
    }

    pub fn bytes(&self) -> Vec<u8> {
        let t = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        t.iter().copied().collect()
    }
}

/// Starts the pump; the handle resolves once the pipe has reached its end. With `tail`,
/// the latest output is also kept in memory.
pub fn pump(
    read_end: OwnedFd,
    files: Arc<Mutex<LogFiles>>,
    service: String,
    tail: Option<Tail>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut pipe = match tokio::net::unix::pipe::Receiver::from_owned_fd(read_end) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("{service}: cannot read its output: {e}");
                return;
            }
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match pipe.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    let mut f = files.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(e) = f.write(&buf[..n]) {
                        tracing::warn!("{service}: cannot write its log: {e}");
                    }
                    if let Some(t) = &tail {
                        t.push(&buf[..n]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("{service}: reading its output failed: {e}");
                    break;
                }
            }
        }
    })
}
