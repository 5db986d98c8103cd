//! The signature catalogue, compiled into the binary from `signatures.toml`.

use regex::{Regex, RegexSet, RegexSetBuilder};
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
    /// A catch-all (an uncaught exception): any specific signature ranks above it, and it
    /// never turns the others into symptoms.
    #[serde(default)]
    pub generic: bool,
    /// Seen in a running process, it leaves the process useless (a lost CUDA context, a
    /// dead engine): the supervisor restarts it unless the service says `report`.
    #[serde(default)]
    pub fatal: bool,
    /// Fatal only when this pattern matches the line too (one telling variant of a
    /// broader signature).
    #[serde(default)]
    pub fatal_if: Option<String>,
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
    /// The generic "looks like an error" test for unrecognised lines. A traceback's header
    /// is not one: its last line (the exception) is what is worth showing, and
    /// `python-exception` shows it.
    pub(crate) errorish: Regex,
    /// Each signature's `fatal_if`, compiled.
    pub(crate) fatal_if: Vec<Option<Regex>>,
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
        let patterns: Vec<String> = patterns.iter().map(|p| ascii_word_boundaries(p)).collect();
        let set = RegexSetBuilder::new(&patterns)
            .dfa_size_limit(DFA_CACHE)
            .build()
            .map_err(|e| e.to_string())?;
        let errorish = Regex::new(&ascii_word_boundaries(
            r"(?i)\b(error|exception|fatal|panic|failed|failure|critical)\b",
        ))
        .map_err(|e| e.to_string())?;
        let fatal_if = file
            .signature
            .iter()
            .map(|s| s.fatal_if.as_deref().map(Regex::new).transpose())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        Ok(Catalogue {
            fatal_if,
            signatures: file.signature,
            set,
            owner,
            first_pattern,
            errorish,
        })
    }
}

/// Room for the lazy DFA of the whole set, so it is built once and not thrown away.
const DFA_CACHE: usize = 64 << 20;

/// `\b` as an ASCII word boundary. A Unicode `\b` makes the regex engine give up its
/// lazy DFA on any non-ASCII byte and fall back to a much slower one, so 5 MB of binary
/// junk took seconds; log signatures only ever need ASCII words either side.
pub(crate) fn ascii_word_boundaries(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push_str("(?-u:\\b)"),
            Some(next) => {
                out.push('\\');
                out.push(next);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn word_boundaries_become_ascii_and_escapes_stay() {
        use super::ascii_word_boundaries as a;
        assert_eq!(a(r"\bXid\b"), r"(?-u:\b)Xid(?-u:\b)");
        assert_eq!(a(r"a\\b\d"), r"a\\b\d");
        assert_eq!(a(r"end\"), r"end\");
    }

    #[test]
    fn no_compiled_pattern_keeps_a_unicode_word_boundary() {
        // Such a pattern sends every non-ASCII line down the slow engine (5 MB of binary
        // junk took 5.7 s instead of 0.1 s).
        let c = super::catalogue();
        let errorish = [c.errorish.as_str().to_string()];
        for p in c.set.patterns().iter().chain(&errorish) {
            let rest = p.replace(r"(?-u:\b)", "").replace(r"\\", "");
            assert!(!rest.contains(r"\b"), "unicode \\b left in {p}");
        }
    }

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
            "python-exception",
            "noise",
        ] {
            assert!(cats.contains(want), "no signature for {want}");
        }
    }
}
