//! CPU lists: `"0-3,8"` as the kernel writes them, or `[0, 1, 2]`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A sorted, de-duplicated set of logical CPU numbers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuList(pub Vec<usize>);

/// The highest CPU number accepted: the kernel's own limit is 8192 CPUs (NR_CPUS), and no
/// node steward runs on has more than a few thousand.
pub const MAX_CPU: usize = 4095;

impl FromStr for CpuList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut cpus = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad =
                || format!("\"{part}\" in \"{s}\" is not a CPU or range; write e.g. \"0-3,8\"");
            let too_high = |n: usize| {
                format!(
                    "CPU {n} in \"{s}\" is beyond the highest CPU number steward takes ({MAX_CPU})"
                )
            };
            match part.split_once('-') {
                Some((a, b)) => {
                    let a: usize = a.trim().parse().map_err(|_| bad())?;
                    let b: usize = b.trim().parse().map_err(|_| bad())?;
                    if a > b {
                        return Err(format!(
                            "range \"{part}\" runs backwards; write \"{b}-{a}\""
                        ));
                    }
                    if b > MAX_CPU {
                        return Err(too_high(b));
                    }
                    cpus.extend(a..=b);
                }
                None => {
                    let n: usize = part.parse().map_err(|_| bad())?;
                    if n > MAX_CPU {
                        return Err(too_high(n));
                    }
                    cpus.push(n);
                }
            }
        }
        if cpus.is_empty() {
            return Err("the CPU list is empty; write e.g. \"0-3\" or leave `cpus` out".into());
        }
        cpus.sort_unstable();
        cpus.dedup();
        Ok(CpuList(cpus))
    }
}

impl fmt::Display for CpuList {
    /// The kernel's compact form, `0-3,8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut i = 0;
        while i < self.0.len() {
            let start = self.0[i];
            let mut end = start;
            while i + 1 < self.0.len() && self.0[i + 1] == end + 1 {
                i += 1;
                end = self.0[i];
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for CpuList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            List(Vec<usize>),
        }
        let form = Form::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a CPU list such as \"0-3,8\" or [0, 1, 2]")
        })?;
        match form {
            Form::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Form::List(v) => CpuList::from_str(
                &v.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for CpuList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_ranges() {
        let list: CpuList = "8, 0-3,2".parse().unwrap();
        assert_eq!(list.0, vec![0, 1, 2, 3, 8]);
        assert_eq!(list.to_string(), "0-3,8");
        assert!("3-1".parse::<CpuList>().unwrap_err().contains("backwards"));
        assert!("a".parse::<CpuList>().is_err());
        assert!("".parse::<CpuList>().is_err());
    }
}
