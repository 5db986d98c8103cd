//! Byte sizes with an explicit unit.
//!
//! `12G` means 12 GiB to Docker and 12 GB to Kubernetes; the two differ by 7%, which is
//! exactly the margin that hangs a node whose limits were sized to the last GiB. So a bare `G` is refused, and every
//! size is printed in both units.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

const KB: u64 = 1000;
const KIB: u64 = 1024;

/// (suffix, multiplier); suffixes are matched case-insensitively.
const UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kb", KB),
    ("mb", KB * KB),
    ("gb", KB * KB * KB),
    ("tb", KB * KB * KB * KB),
    ("kib", KIB),
    ("mib", KIB * KIB),
    ("gib", KIB * KIB * KIB),
    ("tib", KIB * KIB * KIB * KIB),
    // Kubernetes' binary suffixes are unambiguous, so they are accepted too.
    ("ki", KIB),
    ("mi", KIB * KIB),
    ("gi", KIB * KIB * KIB),
    ("ti", KIB * KIB * KIB * KIB),
];

impl ByteSize {
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// `"12.00 GiB (12.88 GB)"`: both readings, so nobody has to convert in their head.
    pub fn both(self) -> String {
        format!("{} ({})", self.binary(), self.decimal())
    }

    /// The size in the largest binary unit that keeps it at or above 1, e.g. `"1.50 GiB"`.
    pub fn binary(self) -> String {
        scaled(self.0, KIB, &["B", "KiB", "MiB", "GiB", "TiB"])
    }

    /// The size in the largest decimal unit that keeps it at or above 1, e.g. `"1.61 GB"`.
    pub fn decimal(self) -> String {
        scaled(self.0, KB, &["B", "kB", "MB", "GB", "TB"])
    }
}

fn scaled(bytes: u64, base: u64, names: &[&str]) -> String {
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= base as f64 && unit + 1 < names.len() {
        value /= base as f64;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", names[unit])
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.both())
    }
}

/// Why a size string was refused; the text is written for the person editing the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeError(pub String);

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ByteSize {
    type Err = SizeError;

    fn from_str(input: &str) -> Result<Self, SizeError> {
        let s = input.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
            .unwrap_or(s.len());
        let (number, unit) = (s[..split].replace('_', ""), s[split..].trim());
        if number.is_empty() {
            return Err(SizeError(format!(
                "\"{input}\" is not a size; write a number and a unit, e.g. \"512MiB\" or \"16GiB\""
            )));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| SizeError(format!("\"{number}\" in \"{input}\" is not a number")))?;
        if unit.is_empty() {
            return Err(SizeError(format!(
                "\"{input}\" has no unit; write \"{number}GiB\" (powers of 2) or \"{number}GB\" (powers of 10), or \"{number}B\" for bytes"
            )));
        }
        let lower = unit.to_ascii_lowercase();
        let Some(&(_, mult)) = UNITS.iter().find(|(name, _)| *name == lower) else {
            return Err(SizeError(unit_error(input, &number, unit, value)));
        };
        let too_large = || {
            SizeError(format!(
                "\"{input}\" is larger than steward takes ({}); check the unit",
                ByteSize(MAX_BYTES).binary()
            ))
        };
        // Whole numbers exactly (an f64 loses bytes past 2^53); fractions through f64.
        let bytes = if number.contains('.') {
            let b = value * mult as f64;
            if !b.is_finite() || b > MAX_BYTES as f64 {
                return Err(too_large());
            }
            b.round() as u64
        } else {
            let whole: u128 = number.parse().map_err(|_| too_large())?;
            match whole.checked_mul(u128::from(mult)) {
                Some(b) if b <= u128::from(MAX_BYTES) => b as u64,
                _ => return Err(too_large()),
            }
        };
        Ok(ByteSize(bytes))
    }
}

/// The largest size accepted: 1 EiB. No node has that much memory or GPU memory, and sums
/// of sizes this large still fit in 64 bits.
pub const MAX_BYTES: u64 = 1 << 60;

fn unit_error(input: &str, number: &str, unit: &str, value: f64) -> String {
    let ambiguous = match unit {
        "k" | "K" => Some(("KiB", KIB, "kB", KB)),
        "m" | "M" => Some(("MiB", KIB * KIB, "MB", KB * KB)),
        "g" | "G" => Some(("GiB", KIB.pow(3), "GB", KB.pow(3))),
        "t" | "T" => Some(("TiB", KIB.pow(4), "TB", KB.pow(4))),
        _ => None,
    };
    match ambiguous {
        Some((bin, bin_mult, dec, dec_mult)) => {
            let as_bin = ByteSize((value * bin_mult as f64) as u64);
            let as_dec = ByteSize((value * dec_mult as f64) as u64);
            format!(
                "\"{input}\" is ambiguous: Docker reads \"{unit}\" as {bin} and Kubernetes as {dec}. \
                 Write \"{number}{bin}\" = {} or \"{number}{dec}\" = {}",
                as_bin.both(),
                as_dec.both()
            )
        }
        None => format!(
            "unknown unit \"{unit}\" in \"{input}\"; use B, kB, MB, GB, TB (powers of 10) or KiB, MiB, GiB, TiB (powers of 2)"
        ),
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size with a unit, e.g. \"512MiB\" or \"16GiB\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(|e: SizeError| E::custom(e))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                Err(E::custom(format!(
                    "{v} has no unit; write a string such as \"{v}B\", \"{v}MiB\" or \"{v}GiB\""
                )))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                self.visit_i64(v as i64)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ByteSize, E> {
                Err(E::custom(format!(
                    "{v} has no unit; write a string such as \"{v}GiB\""
                )))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_units_parse() {
        assert_eq!("512MiB".parse(), Ok(ByteSize(512 * 1024 * 1024)));
        assert_eq!("16GB".parse(), Ok(ByteSize(16_000_000_000)));
        assert_eq!("1.5GiB".parse(), Ok(ByteSize(1_610_612_736)));
        assert_eq!("4Gi".parse(), Ok(ByteSize(4 * 1024 * 1024 * 1024)));
        assert_eq!("100 kB".parse(), Ok(ByteSize(100_000)));
        assert_eq!("4096B".parse(), Ok(ByteSize(4096)));
    }

    #[test]
    fn bare_g_is_refused_with_both_readings() {
        let err = "12G".parse::<ByteSize>().unwrap_err().0;
        assert!(err.contains("ambiguous"), "{err}");
        assert!(err.contains("\"12GiB\" = 12.00 GiB (12.88 GB)"), "{err}");
        assert!(err.contains("\"12GB\" = 11.18 GiB (12.00 GB)"), "{err}");
        assert!("500g".parse::<ByteSize>().is_err());
    }

    #[test]
    fn missing_unit_and_garbage_are_refused() {
        assert!("1024"
            .parse::<ByteSize>()
            .unwrap_err()
            .0
            .contains("no unit"));
        assert!("lots"
            .parse::<ByteSize>()
            .unwrap_err()
            .0
            .contains("not a size"));
        assert!("12 furlongs"
            .parse::<ByteSize>()
            .unwrap_err()
            .0
            .contains("unknown unit"));
    }

    #[test]
    fn sizes_past_an_exbibyte_are_refused_and_whole_numbers_are_exact() {
        assert!("8388608TiB"
            .parse::<ByteSize>()
            .unwrap_err()
            .0
            .contains("larger than"));
        assert!("18446744073709551615B".parse::<ByteSize>().is_err());
        assert!("99999999999999999999999999999999999999999GiB"
            .parse::<ByteSize>()
            .is_err());
        assert!("1e300GiB".parse::<ByteSize>().is_err());
        assert_eq!(
            "9007199254740993B".parse(),
            Ok(ByteSize(9_007_199_254_740_993))
        );
        assert_eq!(
            "1EiB".parse::<ByteSize>().map(|b| b.0).ok(),
            None,
            "no EiB unit"
        );
        assert_eq!("1048576TiB".parse(), Ok(ByteSize(MAX_BYTES)));
    }

    #[test]
    fn prints_both_units() {
        assert_eq!(
            ByteSize(503 * 1024 * 1024 * 1024).both(),
            "503.00 GiB (540.09 GB)"
        );
        assert_eq!(ByteSize(12).both(), "12 B (12 B)");
    }
}
