//! The kernel's log (`/dev/kmsg`, readable by root). One follower per agent reads it as it
//! is written, from the agent's start: it hands each message to the agent (which turns OOM
//! kills, Xids and libcuda segfaults into events) and keeps the latest ones, so that the
//! explanation of a crash reads the kernel's view of the same minutes from memory instead
//! of reading the kernel's whole ring again at every exit.
//!
//! An explanation must not read the kept lines before the follower has caught up: the
//! kernel writes its OOM report before it kills, but the follower may not have read all of
//! it yet when the exit is reaped. So [`KernelLog::recent`] wakes the follower and waits
//! (bounded) until it has drained everything the kernel had at that moment.

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most kernel lines handed to `explain`.
const MAX_LINES: usize = 400;
/// What the follower keeps: the latest records, within both bounds.
const KEEP_RECORDS: usize = 4096;
const KEEP_BYTES: usize = 512 * 1024;
/// The longest an explanation waits for the follower to catch up.
const CATCH_UP: Duration = Duration::from_secs(2);

/// The agent's view of the kernel's log: following it or not, and its latest records.
#[derive(Default)]
pub struct KernelLog {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    kept: Mutex<Kept>,
    drained: Condvar,
}

#[derive(Default)]
struct Kept {
    /// `(kernel time in µs, message)`, oldest first.
    records: VecDeque<(u64, String)>,
    bytes: usize,
    /// The write end of the pipe that wakes the follower; `None` while not following.
    wake: Option<OwnedFd>,
    /// The last time the follower found nothing more to read.
    drained_at: Option<Instant>,
}

impl Kept {
    fn keep(&mut self, ts_us: u64, msg: &str) {
        self.bytes += msg.len();
        self.records.push_back((ts_us, msg.to_string()));
        while self.records.len() > KEEP_RECORDS || self.bytes > KEEP_BYTES {
            match self.records.pop_front() {
                Some((_, m)) => self.bytes -= m.len(),
                None => break,
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl KernelLog {
    /// Follows the log from now on, on a thread of its own, calling `on_message` with each
    /// message. An error when `/dev/kmsg` cannot be read (not root, or a container
    /// without it): then nothing is followed, and [`Self::recent`] finds nothing.
    pub fn follow(&self, on_message: impl FnMut(&str) + Send + 'static) -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")?;
        // Only what comes after the agent started: SEEK_END skips the ring's old records.
        file.seek(SeekFrom::End(0))?;
        let (wake_rx, wake_tx) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        self.shared.lock().wake = Some(wake_tx);
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("kmsg".into())
            .spawn(move || follow_loop(&shared, file, wake_rx, on_message));
        if let Err(e) = spawned {
            self.shared.lock().wake = None;
            return Err(e);
        }
        Ok(())
    }

    /// Kernel lines from the last `within` (by the kernel's own clock) that are about this
    /// process or its cgroup (`pid`, or `group` such as `steward-<id>/web`), as
    /// `kernel: …`: a neighbour's OOM in the same minutes is not this service's cause.
    /// Waits (up to 2 s) for the follower to have read all the kernel has written so far.
    /// Empty when the log is not followed. Blocks: call it off the async runtime.
    pub fn recent(&self, within: Duration, pid: i32, group: &str) -> Vec<u8> {
        let asked = Instant::now();
        let mut kept = self.shared.lock();
        let Some(wake) = &kept.wake else {
            return Vec::new();
        };
        // A full pipe already holds a wake-up; nothing else can go wrong that matters.
        let _ = nix::unistd::write(wake, b"!");
        let deadline = asked + CATCH_UP;
        while kept.wake.is_some() && kept.drained_at.is_none_or(|at| at < asked) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            kept = self
                .shared
                .drained
                .wait_timeout(kept, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let since = uptime_us().saturating_sub(within.as_micros() as u64);
        let about = |msg: &str| -> bool {
            msg.contains(group)
                || msg
                    .split(|c: char| !c.is_ascii_digit())
                    .any(|n| n.parse::<i32>() == Ok(pid))
        };
        let lines: Vec<&str> = kept
            .records
            .iter()
            .filter(|(ts, msg)| *ts >= since && about(msg))
            .map(|(_, msg)| msg.as_str())
            .collect();
        let mut out = Vec::new();
        for msg in &lines[lines.len().saturating_sub(MAX_LINES)..] {
            out.extend_from_slice(b"kernel: ");
            out.extend_from_slice(msg.as_bytes());
            out.push(b'\n');
        }
        out
    }
}

/// The kernel's clock (µs since boot), as its log stamps records.
fn uptime_us() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |s| (s * 1e6) as u64)
}

/// Reads every record there is, then sleeps in `poll` until the kernel writes another or
/// an explanation wakes it to make sure it has read everything.
fn follow_loop(
    shared: &Shared,
    mut file: std::fs::File,
    wake: OwnedFd,
    mut on_message: impl FnMut(&str),
) {
    let mut buf = vec![0u8; 8192];
    loop {
        // Each read returns one record, "prio,seq,usec,flags;message\n"; EAGAIN at the end.
        // An EAGAIN from a read begun at `before` means every record written until then
        // has been read.
        let before = Instant::now();
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                let Some((head, msg)) = rec.split_once(';') else {
                    continue;
                };
                let msg = msg.lines().next().unwrap_or("");
                let ts = head
                    .split(',')
                    .nth(2)
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                shared.lock().keep(ts, msg);
                on_message(msg);
            }
            // Records were overwritten before they were read: go on with the next.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                shared.lock().drained_at = Some(before);
                shared.drained.notify_all();
                if !wait_readable(&file, &wake) {
                    break;
                }
                // Wake-ups are taken after the poll, so each is followed by a fresh read.
                let mut sink = [0u8; 64];
                while nix::unistd::read(&wake, &mut sink).is_ok_and(|n| n > 0) {}
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    shared.lock().wake = None;
    shared.drained.notify_all();
}

/// Sleeps until the log or the wake-up pipe can be read; false when polling fails.
fn wait_readable(file: &std::fs::File, wake: &OwnedFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        let mut fds = [
            PollFd::new(file.as_fd(), PollFlags::POLLIN),
            PollFd::new(wake.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_kept_stays_within_its_bounds_and_drops_the_oldest() {
        let mut kept = Kept::default();
        for i in 0..(KEEP_RECORDS as u64 + 10) {
            kept.keep(i, "x");
        }
        assert_eq!(kept.records.len(), KEEP_RECORDS);
        assert_eq!(kept.records.front().unwrap().0, 10);
        let big = "y".repeat(KEEP_BYTES / 2 + 1);
        kept.keep(1, &big);
        kept.keep(2, &big);
        assert_eq!(kept.records.len(), 1);
        assert!(kept.bytes <= KEEP_BYTES);
    }

    #[test]
    fn without_a_follower_nothing_is_recent_and_nothing_waits() {
        let log = KernelLog::default();
        let t = Instant::now();
        assert!(log.recent(Duration::from_secs(60), 1, "g").is_empty());
        assert!(t.elapsed() < Duration::from_millis(100));
    }
}
