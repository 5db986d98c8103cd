//! The signature catalogue, compiled into the binary from `signatures.toml`.

use regex::{Regex, RegexSet};
use serde::Deserialize;
use std::sync::OnceLock;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub id: String,
    pub category: String,
    pub severity: u8,
    pub confidence: f64,
    pub patterns: Vec<String>,
    pub explanation: String,
    pub fix: String,
    #[serde(default)]
    pub noise: bool,
    #[serde(default)]
    pub sympathetic: bool,
    /// A pattern that must also match within `window` lines.
    #[serde(default)]
    pub near: Option<String>,
    #[serde(default = "default_window")]
    pub window: usize,
}

fn default_window() -> usize {
    50
}

#[derive(Deserialize)]
struct File {
    signature: Vec<Signature>,
}

pub struct Catalogue {
    pub signatures: Vec<Signature>,
    /// Every signature pattern, then every `near` pattern, in one set.
    pub(crate) set: RegexSet,
    /// For each entry of `set`: the signature it belongs to, and whether it is a `near`.
    pub(crate) owner: Vec<(usize, bool)>,
    /// Index in `set` of each signature's first pattern (its most telling one).
    pub(crate) first_pattern: Vec<usize>,
    /// The generic "looks like an error" test for unrecognised lines.
    pub(crate) errorish: Regex,
}

/// The catalogue, parsed and compiled once.
pub fn catalogue() -> &'static Catalogue {
    static CAT: OnceLock<Catalogue> = OnceLock::new();
    CAT.get_or_init(|| {
        Catalogue::from_toml(include_str!("signatures.toml"))
            .expect("the built-in catalogue is valid")
    })
}

impl Catalogue {
    pub fn from_toml(text: &str) -> Result<Catalogue, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut patterns = Vec::new();
        let mut owner = Vec::new();
        let mut first_pattern = Vec::new();
        for (i, s) in file.signature.iter().enumerate() {
            first_pattern.push(patterns.len());
            for p in &s.patterns {
                patterns.push(p.clone());
                owner.push((i, false));
            }
        }
        for (i, s) in file.signature.iter().enumerate() {
            if let Some(n) = &s.near {
                patterns.push(n.clone());
                owner.push((i, true));
            }
        }
        let set = RegexSet::new(&patterns).map_err(|e| e.to_string())?;
        let errorish =
            Regex::new(r"(?i)\b(error|exception|fatal|panic|traceback|failed|failure|critical)\b")
                .map_err(|e| e.to_string())?;
        Ok(Catalogue {
            signatures: file.signature,
            set,
            owner,
            first_pattern,
            errorish,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_built_in_catalogue_compiles_and_covers_the_categories() {
        let c = super::catalogue();
        let cats: std::collections::BTreeSet<&str> =
            c.signatures.iter().map(|s| s.category.as_str()).collect();
        for want in [
            "cgroup-oom",
            "host-oom",
            "cuda-oom",
            "gpu-xid",
            "libcuda-segfault",
            "cuda-illegal-access",
            "nccl",
            "gunicorn-worker-timeout",
            "redis-aof-corrupt",
            "client-timeout",
            "vllm-engine-dead",
            "disk-full",
            "dns-failure",
            "port-in-use",
            "noise",
        ] {
            assert!(cats.contains(want), "no signature for {want}");
        }
    }
}
