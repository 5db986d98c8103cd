//! The kernel's log, when this process may read it (`/dev/kmsg`, root): the recent lines
//! an `explain` of a crash should see beside the process's own output (the OOM killer, a
//! libcuda segfault, an Xid).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

/// Most kernel lines handed to `explain`.
const MAX_LINES: usize = 400;

/// Kernel log lines from the last `within` (by the kernel's own clock) that are about this
/// process or its cgroup (`pid`, or `group` such as `steward-<id>/web`), as `kernel: …`:
/// a neighbour's OOM in the same minutes is not this service's cause. Empty when
/// `/dev/kmsg` cannot be read.
pub fn recent(within: std::time::Duration, pid: i32, group: &str) -> Vec<u8> {
    let about = |msg: &str| -> bool {
        msg.contains(group)
            || msg
                .split(|c: char| !c.is_ascii_digit())
                .any(|n| n.parse::<i32>() == Ok(pid))
    };
    let uptime_us = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |s| (s * 1e6) as u64);
    let since = uptime_us.saturating_sub(within.as_micros() as u64);
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
    else {
        return Vec::new();
    };
    let mut lines: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut buf = vec![0u8; 8192];
    // Each read returns one record: "prio,seq,usec,flags;message\n"; EAGAIN at the end.
    for _ in 0..100_000 {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                let Some((head, msg)) = rec.split_once(';') else {
                    continue;
                };
                let ts: u64 = head
                    .split(',')
                    .nth(2)
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                if ts >= since && about(msg) {
                    lines.push_back(format!("kernel: {}", msg.lines().next().unwrap_or("")));
                    if lines.len() > MAX_LINES {
                        lines.pop_front();
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Calls `on_message` with each kernel log message written from now on, on a thread of
/// its own (reads of `/dev/kmsg` block). An error when `/dev/kmsg` cannot be read (not
/// root, or a container without it): then nothing is followed.
pub fn follow(
    mut on_message: impl FnMut(&str) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open("/dev/kmsg")?;
    // Only what comes after the agent started: SEEK_END skips the ring's old records.
    f.seek(SeekFrom::End(0))?;
    std::thread::Builder::new()
        .name("kmsg".into())
        .spawn(move || {
            let mut buf = vec![0u8; 8192];
            loop {
                match f.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        let rec = String::from_utf8_lossy(&buf[..n]);
                        if let Some((_, msg)) = rec.split_once(';') {
                            on_message(msg.lines().next().unwrap_or(""));
                        }
                    }
                    // EPIPE: records were overwritten before they were read; go on.
                    Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                    Err(_) => return,
                }
            }
        })
}
