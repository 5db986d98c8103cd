//! When a line was written, from the formats logs come in: ISO 8601 / RFC 3339
//! (journalctl -o short-iso, most apps), docker's JSON `time`, `dmesg -T`
//! (`[Tue Mar  3 02:11:45 2026]`) and syslog (`Mar 04 03:20:11`, which has no year; the
//! caller's year is used). Times without a zone are read as UTC.

use std::time::SystemTime;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn iso(date: &str, time: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(&format!("{date}T{time}Z")).ok()
}

/// The time at the start of `line`, if it has one. `year` fills in syslog's missing year.
pub fn line_time(line: &str, year: i32) -> Option<SystemTime> {
    let line = line.trim_start();
    // docker json-file: {"log":"…","time":"2026-03-06T11:02:33.1Z"}
    if line.starts_with('{') {
        if let Some(i) = line.find("\"time\":\"") {
            let t = &line[i + 8..];
            let t = &t[..t.find('"')?];
            return iso(t.get(..10)?, t.get(11..19)?);
        }
    }
    let b = line.as_bytes();
    // 2026-03-02T10:14:07… or 2026-03-02 10:14:07… (optionally inside "[…]")
    let l = line.trim_start_matches('[');
    // By byte position, then `get`: a multi-byte character where a digit should be makes
    // it not a time, never a panic.
    if l.len() >= 19
        && l.as_bytes()[4] == b'-'
        && l.as_bytes()[7] == b'-'
        && matches!(l.as_bytes()[10], b'T' | b' ')
    {
        return iso(l.get(..10)?, l.get(11..19)?);
    }
    // [Tue Mar  3 02:11:45 2026]
    if b.first() == Some(&b'[') {
        let inner = &line[1..line.find(']')?];
        let f: Vec<&str> = inner.split_whitespace().collect();
        if f.len() == 5 {
            return month_day_time(f[1], f[2], f[3], f[4].parse().ok()?);
        }
        return None;
    }
    // Mar 04 03:20:11 host …
    let f: Vec<&str> = line.splitn(4, ' ').filter(|s| !s.is_empty()).collect();
    if f.len() >= 3 {
        return month_day_time(f[0], f[1], f[2], year);
    }
    None
}

fn month_day_time(month: &str, day: &str, time: &str, year: i32) -> Option<SystemTime> {
    let m = MONTHS.iter().position(|n| *n == month)? + 1;
    let d: u32 = day.parse().ok()?;
    if time.len() != 8 {
        return None;
    }
    iso(&format!("{year:04}-{m:02}-{d:02}"), time)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn reads_the_usual_formats() {
        assert_eq!(
            line_time("2026-03-02T10:14:07+0000 node kernel: x", 2026),
            Some(at("2026-03-02T10:14:07Z"))
        );
        assert_eq!(
            line_time("[2024-01-19 00:48:01 +0000] [2973] [INFO] x", 2026),
            Some(at("2024-01-19T00:48:01Z"))
        );
        assert_eq!(
            line_time(
                "[Tue Mar  3 02:11:45 2026] postgres invoked oom-killer",
                2020
            ),
            Some(at("2026-03-03T02:11:45Z"))
        );
        assert_eq!(
            line_time("Mar 04 03:20:11 dgx-7 kernel: NVRM: Xid", 2026),
            Some(at("2026-03-04T03:20:11Z"))
        );
        assert_eq!(
            line_time("{\"log\":\"x\",\"time\":\"2026-03-06T11:02:33.1Z\"}", 2026),
            Some(at("2026-03-06T11:02:33Z"))
        );
        assert_eq!(line_time("  File \"x.py\", line 3", 2026), None);
        // A multi-byte character where a digit should be: not a time, and no panic.
        assert_eq!(line_time("2026-03-02T10:14:0é rest", 2026), None);
        assert_eq!(line_time("2026-03-0é 10:14:07 x", 2026), None);
        assert_eq!(line_time("", 2026), None);
    }
}
