//! The pump: copies a run's output from its pipe into its log files until every writer
//! has closed the pipe (the main process and any child that kept its stdout).

use super::files::LogFiles;
use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Told once when writing the log starts failing (a full disk, say), with the error: the
/// agent makes it an event.
pub type OnLogTrouble = Arc<dyn Fn(&io::Error) + Send + Sync>;

/// While writes fail: how often it is said again, with the count.
const SAY_AGAIN: Duration = Duration::from_secs(60);

/// One line for a burst of write errors instead of one per write (a chatty service on a
/// full disk fails hundreds of times a second).
struct Trouble {
    since: Option<(Instant, u64)>,
    said: Instant,
    on_trouble: Option<OnLogTrouble>,
}

impl Trouble {
    fn failed(&mut self, service: &str, e: &io::Error) {
        let now = Instant::now();
        match &mut self.since {
            None => {
                self.since = Some((now, 1));
                self.said = now;
                tracing::warn!(
                    "{service}: cannot write its log: {e}; its output is dropped until this clears"
                );
                if let Some(f) = &self.on_trouble {
                    f(e);
                }
            }
            Some((_, n)) => {
                *n += 1;
                if now.duration_since(self.said) >= SAY_AGAIN {
                    self.said = now;
                    tracing::warn!(
                        "{service}: still cannot write its log ({n} writes dropped): {e}"
                    );
                }
            }
        }
    }

    fn worked(&mut self, service: &str) {
        if let Some((since, n)) = self.since.take() {
            tracing::info!(
                "{service}: its log is written again ({n} writes dropped over {:.0?})",
                since.elapsed()
            );
        }
    }
}

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

/// The output watch and where its findings go (boxed: the channel's first block holds
/// 32 slots per idle service).
pub type LiveOutput = (
    steward_explain::LiveWatch,
    tokio::sync::mpsc::UnboundedSender<Box<steward_explain::LiveFinding>>,
);

thread_local! {
    /// One read buffer per runtime thread, shared by every pump on it.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 64 * 1024]);
}

/// Starts the pump; the handle resolves once the pipe has reached its end. With `tail`,
/// the latest output is also kept in memory; `on_trouble` hears when writing starts to fail.
pub fn pump(
    read_end: OwnedFd,
    files: Arc<Mutex<LogFiles>>,
    service: String,
    tail: Option<Tail>,
    on_trouble: Option<OnLogTrouble>,
    mut live: Option<LiveOutput>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pipe = match tokio::net::unix::pipe::Receiver::from_owned_fd(read_end) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("{service}: cannot read its output: {e}");
                return;
            }
        };
        let mut trouble = Trouble {
            since: None,
            said: Instant::now(),
            on_trouble,
        };
        loop {
            if let Err(e) = pipe.readable().await {
                tracing::warn!("{service}: reading its output failed: {e}");
                break;
            }
            // The buffer is the worker thread's, borrowed between readiness and the write
            // (nothing awaits in between): an idle service holds no buffer of its own.
            let read = READ_BUF.with(|b| {
                let mut buf = b.borrow_mut();
                let n = pipe.try_read(&mut buf)?;
                if n > 0 {
                    let written = files
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .write(&buf[..n]);
                    match written {
                        Ok(()) => trouble.worked(&service),
                        Err(e) => trouble.failed(&service, &e),
                    }
                    if let Some(t) = &tail {
                        t.push(&buf[..n]);
                    }
                    if let Some((watch, tx)) = &mut live {
                        for f in watch.feed(&buf[..n], Instant::now()) {
                            let _ = tx.send(Box::new(f));
                        }
                    }
                }
                Ok::<usize, io::Error>(n)
            });
            match read {
                Ok(0) => break,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    tracing::warn!("{service}: reading its output failed: {e}");
                    break;
                }
            }
        }
    })
}
