//! Watching a running process's output: each complete line goes through the catalogue as
//! it is written, and a cause (or a fatal signature) that fires is reported, rate-limited
//! per signature: the first at once, then one summary a minute while it repeats. Memory is
//! bounded by one partial line and one counter per signature that fired, whatever the output.

use crate::catalogue::{catalogue, Catalogue};
use crate::line::{normalise, MAX_LINE};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// How often a repeating signature is reported again.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);

/// A signature that fired in a running process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveFinding {
    pub id: String,
    pub category: String,
    /// The latest line that matched (at most 300 characters).
    pub line: String,
    /// Occurrences since the last report of this signature (the first report: 1).
    pub count: u64,
    /// Occurrences since the process started.
    pub total: u64,
    /// It leaves the process useless: a restart is due.
    pub fatal: bool,
    pub fix: String,
}

struct Seen {
    /// The signature's index in the catalogue.
    sig: usize,
    reported_at: Instant,
    pending: u64,
    total: u64,
}

pub struct LiveWatch {
    cat: &'static Catalogue,
    partial: Vec<u8>,
    /// The partial line grew past [`MAX_LINE`]: the rest of it is dropped.
    overlong: bool,
    /// The signatures that fired, in the order they first did: empty for most processes,
    /// so an idle one holds nothing per signature.
    seen: Vec<Seen>,
}

impl Default for LiveWatch {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveWatch {
    pub fn new() -> Self {
        LiveWatch {
            cat: catalogue(),
            partial: Vec::new(),
            overlong: false,
            seen: Vec::new(),
        }
    }

    /// Feeds output as it arrives (any chunking); returns what is to be reported now.
    pub fn feed(&mut self, bytes: &[u8], now: Instant) -> Vec<LiveFinding> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(nl);
            rest = &tail[1..];
            if self.partial.is_empty() {
                self.line(line, now, &mut out);
            } else {
                self.append(line);
                let whole = std::mem::take(&mut self.partial);
                self.line(&whole, now, &mut out);
                self.partial = whole;
                self.partial.clear();
            }
            self.overlong = false;
        }
        self.append(rest);
        out
    }

    fn append(&mut self, bytes: &[u8]) {
        if self.overlong {
            return;
        }
        let room = MAX_LINE.saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.overlong = bytes.len() > room;
    }

    fn line(&mut self, raw: &[u8], now: Instant, out: &mut Vec<LiveFinding>) {
        // Most lines match nothing: the set's one pass decides that before any allocation
        // beyond the normalised line.
        let line = normalise(raw);
        let matches = self.cat.set.matches(&line);
        if !matches.matched_any() {
            return;
        }
        let mut done = Vec::new();
        for idx in matches.iter() {
            let (sig, is_near) = self.cat.owner[idx];
            if is_near || done.contains(&sig) {
                continue;
            }
            done.push(sig);
            let s = &self.cat.signatures[sig];
            let fatal = s.fatal
                || self.cat.fatal_if[sig]
                    .as_ref()
                    .is_some_and(|r| r.is_match(&line));
            // Only what a person should act on: a cause, or what kills the process. Noise,
            // symptoms, catch-alls and signatures that need a second line nearby wait for
            // the exit's report.
            if !fatal && (s.noise || s.sympathetic || s.generic || s.near.is_some()) {
                continue;
            }
            let report = match self.seen.iter_mut().find(|s| s.sig == sig) {
                None => {
                    self.seen.push(Seen {
                        sig,
                        reported_at: now,
                        pending: 0,
                        total: 1,
                    });
                    Some((1, 1))
                }
                Some(seen) => {
                    seen.total += 1;
                    seen.pending += 1;
                    if now.duration_since(seen.reported_at) >= REPORT_EVERY {
                        let n = std::mem::take(&mut seen.pending);
                        seen.reported_at = now;
                        Some((n, seen.total))
                    } else {
                        None
                    }
                }
            };
            if let Some((count, total)) = report {
                out.push(LiveFinding {
                    id: s.id.clone(),
                    category: s.category.clone(),
                    line: line.trim().chars().take(300).collect(),
                    count,
                    total,
                    fatal,
                    fix: s.fix.clone(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeating_cause_is_said_at_once_then_once_a_minute_with_its_count() {
        let mut w = LiveWatch::new();
        let t0 = Instant::now();
        let line = b"[2026-12-04 10:00:00 +0000] [1] [CRITICAL] WORKER TIMEOUT (pid:42)\n";
        let first = w.feed(line, t0);
        assert_eq!(first.len(), 1);
        assert_eq!(
            (first[0].category.as_str(), first[0].count, first[0].fatal),
            ("gunicorn-worker-timeout", 1, false)
        );
        for i in 1..10 {
            assert!(w.feed(line, t0 + Duration::from_secs(i)).is_empty());
        }
        let later = w.feed(line, t0 + Duration::from_secs(61));
        assert_eq!((later[0].count, later[0].total), (10, 11));
    }

    #[test]
    fn lines_split_across_reads_are_whole_and_noise_and_symptoms_say_nothing() {
        let mut w = LiveWatch::new();
        let now = Instant::now();
        assert!(w
            .feed(b"RuntimeError: CUDA error: an illegal mem", now)
            .is_empty());
        let got = w.feed(b"ory access was encountered\nnext", now);
        assert_eq!(got.len(), 1);
        assert!(got[0].fatal, "{got:?}");
        assert!(w.feed(b"UserWarning: The value of the smallest subnormal for <class 'numpy.float64'> type is zero.\n", now).is_empty());
        assert!(w
            .feed(
                b"[2026] [1] [WARNING] Worker with pid 7 was terminated due to signal 9\n",
                now
            )
            .is_empty());
        let nccl = w.feed(b"[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1) ran for 600000 milliseconds\n", now);
        assert!(
            nccl.iter().any(|f| f.fatal && f.category == "nccl"),
            "{nccl:?}"
        );
    }

    #[test]
    fn a_line_longer_than_the_bound_costs_no_more_than_the_bound() {
        let mut w = LiveWatch::new();
        let now = Instant::now();
        let big = vec![b'x'; 10 * MAX_LINE];
        for _ in 0..5 {
            assert!(w.feed(&big, now).is_empty());
        }
        assert!(w.partial.len() <= MAX_LINE);
        assert_eq!(w.feed(b"\n", now), vec![]);
        assert!(w.partial.is_empty());
    }
}
