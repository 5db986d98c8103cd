//! Compose's durations and byte sizes, written the way steward.toml wants them.

/// A compose duration (`1m30s`, `10s`, `1.5s`, `500ms`, `2h`) as a steward one (`90s`,
/// `1500ms`, `7200s`): whole seconds when it has no milliseconds.
pub fn duration(text: &str) -> Result<String, String> {
    let bad = || {
        format!("\"{text}\" is not a duration; compose writes e.g. \"30s\", \"1m30s\" or \"500ms\"")
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let mut nanos: f64 = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let n: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        nanos += n * scale;
        rest = tail;
    }
    let ms = (nanos / 1e6).round() as u64;
    Ok(if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    })
}

/// A compose byte size (`12G`, `512m`, `1gb`, `100k`, or a number of bytes): steward's
/// spelling of it (`12GiB`: compose's units are powers of 2) and the bytes.
pub fn size(text: &str) -> Result<(String, u64), String> {
    let t = text.trim().to_ascii_lowercase();
    let bad = || format!("\"{text}\" is not a size compose knows (a number with b, k, m, g or t)");
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_len);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let power = match unit.trim() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 1,
        "m" | "mb" | "mib" => 2,
        "g" | "gb" | "gib" => 3,
        "t" | "tb" | "tib" => 4,
        _ => return Err(bad()),
    };
    let bytes = n * 1024f64.powi(power);
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    let bytes = bytes.round() as u64;
    Ok((spelled(bytes), bytes))
}

/// The largest binary unit that holds `bytes` exactly.
fn spelled(bytes: u64) -> String {
    for (unit, scale) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if bytes >= scale && bytes.is_multiple_of(scale) {
            return format!("{}{unit}", bytes / scale);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("1m30s").unwrap(), "90s");
        assert_eq!(duration("10s").unwrap(), "10s");
        assert_eq!(duration("1.5s").unwrap(), "1500ms");
        assert_eq!(duration("500ms").unwrap(), "500ms");
        assert_eq!(duration("2h").unwrap(), "7200s");
        assert!(duration("10 minutes").is_err());
        assert!(duration("").is_err());
    }

    #[test]
    fn sizes_are_binary_as_compose_reads_them() {
        assert_eq!(size("12G").unwrap(), ("12GiB".into(), 12 << 30));
        assert_eq!(size("512m").unwrap().0, "512MiB");
        assert_eq!(size("1.5g").unwrap().0, "1536MiB");
        assert_eq!(size("1000").unwrap().0, "1000B");
        assert_eq!(size("2gb").unwrap().0, "2GiB");
        assert!(size("12X").is_err());
        assert!(size("1e400g").is_err());
    }
}
