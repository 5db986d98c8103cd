//! `explain --since`: only lines from a point in time on. A line without a time of its own
//! (a stack frame, a continuation) goes with the last timed line before it.

use crate::timestamp::line_time;
use std::time::SystemTime;

/// Reads `--since`: a duration back from `now` (`"2h"`), or a time
/// (`"2026-03-02T10:00:00Z"`).
pub fn parse_since(s: &str, now: SystemTime) -> Result<SystemTime, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH));
    }
    humantime::parse_rfc3339_weak(s).map_err(|_| {
        format!(
            "--since {s:?} is neither a duration (\"2h\") nor a time (\"2026-03-02T10:00:00Z\")"
        )
    })
}

/// Keeps lines at or after a cut-off.
pub struct Since {
    cutoff: Option<SystemTime>,
    /// Fills in the year of syslog lines, which have none.
    year: i32,
    keeping: bool,
}

impl Since {
    /// `cutoff: None` keeps everything. `now` gives syslog lines their year.
    pub fn new(cutoff: Option<SystemTime>, now: SystemTime) -> Self {
        let year = humantime::format_rfc3339(now).to_string()[..4]
            .parse()
            .unwrap_or(2026);
        Since {
            cutoff,
            year,
            keeping: true,
        }
    }

    /// Whether `line` is kept. Only its first 256 bytes are looked at for a time.
    pub fn keep(&mut self, line: &[u8]) -> bool {
        let Some(cutoff) = self.cutoff else {
            return true;
        };
        let head = String::from_utf8_lossy(&line[..line.len().min(256)]);
        if let Some(t) = line_time(&head, self.year) {
            self.keeping = t >= cutoff;
        }
        self.keeping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untimed_lines_follow_the_last_timed_one() {
        let now = humantime::parse_rfc3339("2026-03-02T12:00:00Z").unwrap();
        let mut s = Since::new(Some(parse_since("1h", now).unwrap()), now);
        assert!(!s.keep(b"2026-03-02T10:00:00Z old"));
        assert!(!s.keep(b"  File \"x.py\", line 3"));
        assert!(s.keep(b"2026-03-02T11:30:00Z new"));
        assert!(s.keep(b"  File \"y.py\", line 9"));
        // A line whose time is unreadable keeps the last decision (no panic).
        assert!(s.keep("2026-03-02T10:14:0é rest".as_bytes()));
    }

    #[test]
    fn a_bad_since_says_what_it_takes() {
        let err = parse_since("yesterday", SystemTime::now()).unwrap_err();
        assert!(err.contains("neither a duration"), "{err}");
        // A duration longer than the epoch clamps to it instead of panicking.
        assert!(parse_since("100000000y", SystemTime::now()).is_ok());
    }
}
