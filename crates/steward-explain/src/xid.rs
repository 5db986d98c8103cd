//! What an NVIDIA Xid code means and what to do, from NVIDIA's Xid catalogue.

use regex::Regex;
use std::sync::OnceLock;

/// `(meaning, action)` for the codes seen on ML nodes.
pub fn meaning(code: u32) -> Option<(&'static str, &'static str)> {
    Some(match code {
        13 => (
            "graphics engine exception (often an application bug)",
            "restart the application",
        ),
        31 => (
            "GPU memory page fault (an application accessed bad memory)",
            "restart the application",
        ),
        43 => (
            "GPU stopped processing (the application hit a fault)",
            "restart the application",
        ),
        45 => (
            "preemptive cleanup after an earlier error",
            "find the earlier Xid; it is the cause",
        ),
        48 => (
            "double-bit ECC error (uncorrectable memory error)",
            "drain the node and reset the GPU; if it repeats, replace it",
        ),
        61 | 62 => (
            "internal micro-controller error",
            "reset the GPU; update the driver",
        ),
        63 | 64 => (
            "ECC page retirement or row remapping event",
            "reset the GPU so the repair takes effect",
        ),
        74 => (
            "NVLink error",
            "check the NVLink connections; reset the GPU",
        ),
        79 => (
            "GPU has fallen off the bus",
            "reboot the node; check power and PCIe seating",
        ),
        92 => (
            "high single-bit ECC error rate",
            "watch it; drain and reset if it grows",
        ),
        94 => (
            "contained ECC error",
            "restart the application that used the memory",
        ),
        95 => (
            "uncontained ECC error",
            "reset the GPU; every process on it is affected",
        ),
        119 | 120 => (
            "GSP firmware error or timeout",
            "reset the GPU; update the driver",
        ),
        145 | 149 => (
            "NVLink/NVSwitch or fabric error",
            "reset the GPU; check the fabric manager",
        ),
        _ => return None,
    })
}

/// The GPU a driver's Xid line names, as it names it: `0000:00:06` in
/// `NVRM: Xid (PCI:0000:00:06): 79, …`.
pub fn pci_in(line: &str) -> Option<&str> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"(?:PCI:|NVRM: GPU (?:at )?(?:PCI:)?)([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}(?:\.[0-9])?)")
            .expect("valid")
    });
    Some(re.captures(line)?.get(1)?.as_str())
}

/// The Xid a driver line means when it says it in words, with no number: a GPU that fell
/// off the bus is Xid 79, a double-bit ECC error 48, a GSP that stopped answering 119.
pub fn code_from_words(line: &str) -> Option<u32> {
    let l = line.to_ascii_lowercase();
    if !l.contains("nvrm") {
        return None;
    }
    [
        ("fallen off the bus", 79),
        ("double bit error", 48),
        ("double bit ecc", 48),
        ("timeout waiting for rpc from gsp", 119),
        ("gsp rpc timeout", 119),
    ]
    .iter()
    .find(|(words, _)| l.contains(words))
    .map(|&(_, code)| code)
}

/// The process an Xid line names (`pid=870`), when it names one.
pub fn pid_in(line: &str) -> Option<u32> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"\bpid=(\d+)").expect("valid"));
    re.captures(line)?.get(1)?.as_str().parse().ok()
}

/// Whether an Xid line's PCI id (`0000:00:06`) and NVML's bus id (`00000000:00:06.0`)
/// are the same device: domain, bus and device compared as numbers.
pub fn same_pci(xid: &str, nvml: &str) -> bool {
    fn parts(id: &str) -> Option<(u64, u64, u64)> {
        let id = id.split('.').next()?;
        let mut it = id.rsplit(':');
        let device = u64::from_str_radix(it.next()?, 16).ok()?;
        let bus = u64::from_str_radix(it.next()?, 16).ok()?;
        let domain = it
            .next()
            .map_or(Some(0), |d| u64::from_str_radix(d, 16).ok())?;
        Some((domain, bus, device))
    }
    parts(xid).is_some_and(|p| Some(p) == parts(nvml))
}

/// The Xid code in a driver line, if any.
pub fn code_in(line: &str) -> Option<u32> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"Xid \([^)]*\): (\d+)|\bXid (\d+)\b").expect("valid"));
    let caps = re.captures(line)?;
    caps.get(1).or(caps.get(2))?.as_str().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_xid_lines_pci_id_matches_nvmls_bus_id() {
        let line =
            "NVRM: Xid (PCI:0000:00:06): 79, pid=870, name=python3, GPU has fallen off the bus.";
        assert_eq!(pci_in(line), Some("0000:00:06"));
        assert_eq!(code_in(line), Some(79));
        assert_eq!(pid_in(line), Some(870));
        let words = "NVRM: GPU at PCI:0000:00:06: GPU has fallen off the bus.";
        assert_eq!((code_in(words), code_from_words(words)), (None, Some(79)));
        assert_eq!(pci_in(words), Some("0000:00:06"));
        assert_eq!(
            pci_in("NVRM: GPU 0000:0a:00.0: RmInitAdapter failed!"),
            Some("0000:0a:00.0")
        );
        assert_eq!(
            code_from_words("NVRM: GPU 0000:0a:00.0: RmInitAdapter failed!"),
            None
        );
        assert!(same_pci("0000:00:06", "00000000:00:06.0"));
        assert!(!same_pci("0000:00:07", "00000000:00:06.0"));
        assert!(!same_pci("zz", "00000000:00:06.0"));
    }
}
