use crate::{HostError, Sysroot};
use serde::Serialize;

/// The lines of `/proc/meminfo` that admission and `doctor` need, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemInfo {
    pub total: u64,
    pub available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

impl MemInfo {
    pub fn read(root: &Sysroot) -> Result<Self, HostError> {
        let text = root.read("/proc/meminfo")?;
        Self::parse(&text).map_err(|what| HostError::Parse {
            path: root.path("/proc/meminfo"),
            what,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let field = |name: &str| -> Result<u64, String> {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|rest| {
                    let mut parts = rest.split_whitespace();
                    let n: u64 = parts.next()?.parse().ok()?;
                    Some(match parts.next() {
                        Some("kB") => n * 1024,
                        _ => n,
                    })
                })
                .ok_or_else(|| format!("no readable `{name}` line"))
        };
        Ok(MemInfo {
            total: field("MemTotal")?,
            available: field("MemAvailable")?,
            swap_total: field("SwapTotal").unwrap_or(0),
            swap_free: field("SwapFree").unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kb_lines() {
        let m = MemInfo::parse("MemTotal:       131891408 kB\nMemFree: 1 kB\nMemAvailable:   120000000 kB\nSwapTotal: 0 kB\n").unwrap();
        assert_eq!(m.total, 131891408 * 1024);
        assert_eq!(m.available, 120000000 * 1024);
        assert_eq!(m.swap_total, 0);
        assert!(MemInfo::parse("nothing").unwrap_err().contains("MemTotal"));
    }
}
