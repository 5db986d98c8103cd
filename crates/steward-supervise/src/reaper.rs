//! One place reaps every child: steward is a child subreaper, so orphans of its services
//! (a daemonised grandchild, a crashed worker's helpers) are re-parented to it, and as PID 1
//! in a container it inherits everything. A single SIGCHLD-driven loop calls `wait4(-1)`
//! and hands each exit to whoever spawned that pid; everything else is reaped and counted.

use crate::classify::WaitOutcome;
use std::collections::HashMap;
use std::io;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// How a child ended, as `wait4` reported it.
#[derive(Debug, Clone, Copy)]
pub struct Reaped {
    pub outcome: WaitOutcome,
    /// Peak RSS of that process (not its children), in bytes.
    pub max_rss: u64,
}

#[derive(Default)]
struct Waiters {
    by_pid: HashMap<i32, oneshot::Sender<Reaped>>,
}

pub struct Reaper {
    // Held while spawning, so that a child that exits at once is never reaped before its
    // waiter is registered (and std's own wait on a failed exec finds its child).
    waiters: Mutex<Waiters>,
    orphans_reaped: AtomicU64,
}

impl Reaper {
    /// Becomes the child subreaper and starts the reaping loop on the current runtime.
    pub fn start() -> io::Result<Arc<Reaper>> {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag only.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
        let reaper = Arc::new(Reaper {
            waiters: Mutex::new(Waiters::default()),
            orphans_reaped: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&reaper);
        tokio::spawn(async move {
            loop {
                let Some(r) = weak.upgrade() else { break };
                r.reap_all();
                drop(r);
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(reaper)
    }

    /// Spawns `cmd` and returns its pid and a receiver for its exit.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<(i32, oneshot::Receiver<Reaped>)> {
        let mut waiters = self.lock();
        let child = cmd.spawn()?;
        let pid = child.id() as i32;
        // `Child` neither waits nor kills on drop; the reaper owns the exit from here on.
        drop(child);
        let (tx, rx) = oneshot::channel();
        waiters.by_pid.insert(pid, tx);
        Ok((pid, rx))
    }

    /// Starts a process with `start` (which returns its pid once it runs) and returns a
    /// receiver for its exit. No exit is reaped before its waiter is registered.
    pub(crate) fn launch(
        &self,
        start: impl FnOnce() -> io::Result<i32>,
    ) -> io::Result<(i32, oneshot::Receiver<Reaped>)> {
        let mut waiters = self.lock();
        let pid = start()?;
        let (tx, rx) = oneshot::channel();
        waiters.by_pid.insert(pid, tx);
        Ok((pid, rx))
    }

    /// Orphans (processes steward did not spawn directly) reaped so far.
    pub fn orphans_reaped(&self) -> u64 {
        self.orphans_reaped.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reap_all(&self) {
        loop {
            let mut waiters = self.lock();
            let mut status: libc::c_int = 0;
            // SAFETY: rusage is plain data that wait4 fills in.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: valid pointers to locals; WNOHANG never blocks.
            let pid = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, &mut usage) };
            if pid == 0 {
                return; // children remain, none has exited
            }
            if pid < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    _ => return, // ECHILD: no children at all
                }
            }
            let outcome = if libc::WIFEXITED(status) {
                WaitOutcome::Exited(libc::WEXITSTATUS(status))
            } else if libc::WIFSIGNALED(status) {
                WaitOutcome::Signaled(libc::WTERMSIG(status))
            } else {
                continue;
            };
            let reaped = Reaped {
                outcome,
                max_rss: (usage.ru_maxrss.max(0) as u64) * 1024,
            };
            match waiters.by_pid.remove(&pid) {
                Some(tx) => {
                    let _ = tx.send(reaped);
                }
                None => {
                    self.orphans_reaped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
