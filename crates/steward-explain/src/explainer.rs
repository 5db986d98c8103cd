//! The pass over the lines and the ranking.

use crate::catalogue::{catalogue, Catalogue};
use crate::line::normalise;
use crate::templates::{Template, Templates};
use serde::Serialize;

/// One signature seen in the input.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    pub id: String,
    pub category: String,
    pub severity: u8,
    pub confidence: f64,
    /// Severity x confidence, halved for a symptom when a cause was also found; 0 for noise.
    pub score: f64,
    /// 1-based number of the line shown (the most telling match).
    pub line_no: usize,
    /// 1-based number of the first matching line: ties are ranked by it.
    pub first_line: usize,
    pub line: String,
    pub count: usize,
    pub explanation: String,
    pub fix: String,
    /// More about this occurrence (an Xid's meaning).
    pub detail: Option<String>,
    pub noise: bool,
    pub sympathetic: bool,
    pub generic: bool,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub lines: usize,
    /// Causes first, then symptoms, then noise.
    pub findings: Vec<Finding>,
    /// Lines that look like errors but match no signature, collapsed into templates.
    pub unrecognised: Vec<Template>,
}

impl Report {
    /// The most likely cause, if anything but noise was found.
    pub fn top(&self) -> Option<&Finding> {
        self.findings.first().filter(|f| !f.noise)
    }

    /// `"cuda-oom: RuntimeError: CUDA out of memory… — lower the batch size…"`.
    pub fn one_line(&self) -> Option<String> {
        let f = self.top()?;
        let line: String = f.line.trim().chars().take(160).collect();
        let fix = f.fix.split(['.', ';', ',']).next().unwrap_or("").trim();
        Some(format!("{}: {line} — {fix}", f.category))
    }
}

struct Hit {
    first: usize,
    /// The line shown: the one matching the signature's most telling pattern (its first
    /// listed), not a call-trace frame that happened to come first.
    shown_no: usize,
    shown_rank: usize,
    line: String,
    count: usize,
    lines: Vec<usize>,
    /// Process ids named in the matching lines (bounded), for correlation.
    pids: std::collections::BTreeSet<u32>,
    /// The last Python stack frame (`File "…", line N, in f`) before the line shown.
    frame: Option<String>,
}

/// Most pids remembered per signature.
const KEEP_PIDS: usize = 256;

/// The pid a line is about: `pid:123`, `pid=123`, `pid 123`, `Killed process 123`.
fn pid_in(line: &str) -> Option<u32> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"(?:\bpid(?::|=|\s)\s*|Killed process )(\d+)").expect("valid")
    });
    re.captures(line)?.get(1)?.as_str().parse().ok()
}

/// Feeds lines one at a time; memory is bounded by the number of signatures and templates,
/// not by the input.
pub struct Explainer {
    cat: &'static Catalogue,
    n: usize,
    hits: Vec<Option<Hit>>,
    near: Vec<Vec<usize>>,
    templates: Templates,
    /// The latest Python stack frame line, so an exception can say where it was raised.
    last_frame: Option<String>,
}

impl Default for Explainer {
    fn default() -> Self {
        Self::new()
    }
}

/// Line numbers remembered per signature (for `near` windows).
const KEEP_LINES: usize = 64;

impl Explainer {
    pub fn new() -> Self {
        let cat = catalogue();
        Explainer {
            cat,
            n: 0,
            hits: (0..cat.signatures.len()).map(|_| None).collect(),
            near: vec![Vec::new(); cat.signatures.len()],
            templates: Templates::default(),
            last_frame: None,
        }
    }

    pub fn feed(&mut self, raw: &[u8]) {
        self.n += 1;
        let line = normalise(raw);
        if line.trim_start().starts_with("File \"") {
            self.last_frame = Some(line.trim().chars().take(300).collect());
        }
        let matches = self.cat.set.matches(&line);
        let mut any = false;
        let mut seen = std::collections::BTreeSet::new();
        for idx in matches.iter() {
            let (sig, is_near) = self.cat.owner[idx];
            if is_near {
                let v = &mut self.near[sig];
                if v.len() < KEEP_LINES * 4 {
                    v.push(self.n);
                }
                continue;
            }
            any = true;
            if !seen.insert(sig) {
                continue;
            }
            let pid = pid_in(&line);
            let rank = idx - self.cat.first_pattern[sig];
            let hit = self.hits[sig].get_or_insert_with(|| Hit {
                first: self.n,
                shown_no: self.n,
                shown_rank: rank,
                line: line.chars().take(1000).collect(),
                count: 0,
                lines: Vec::new(),
                pids: Default::default(),
                frame: self.last_frame.clone(),
            });
            hit.count += 1;
            if rank < hit.shown_rank {
                hit.shown_rank = rank;
                hit.shown_no = self.n;
                hit.line = line.chars().take(1000).collect();
                hit.frame = self.last_frame.clone();
            }
            if hit.lines.len() < KEEP_LINES {
                hit.lines.push(self.n);
            }
            if let Some(p) = pid.filter(|_| hit.pids.len() < KEEP_PIDS) {
                hit.pids.insert(p);
            }
        }
        if !any && self.cat.errorish.is_match(&line) {
            self.templates.add(self.n, &line);
        }
    }

    pub fn finish(self) -> Report {
        let cat = self.cat;
        let mut findings: Vec<Finding> = Vec::new();
        let mut pids_of: std::collections::BTreeMap<String, std::collections::BTreeSet<u32>> =
            Default::default();
        for (i, hit) in self.hits.into_iter().enumerate() {
            let Some(hit) = hit else { continue };
            let sig = &cat.signatures[i];
            if sig.near.is_some() {
                let near = &self.near[i];
                let close = hit
                    .lines
                    .iter()
                    .any(|l| near.iter().any(|n| n.abs_diff(*l) <= sig.window));
                if !close {
                    continue;
                }
            }
            pids_of
                .entry(sig.category.clone())
                .or_default()
                .extend(hit.pids.iter().copied());
            let detail = crate::xid::code_in(&hit.line)
                .map(|code| match crate::xid::meaning(code) {
                    Some((what, action)) => format!("Xid {code}: {what}; {action}"),
                    None => format!("Xid {code}: see NVIDIA's Xid catalogue"),
                })
                .or_else(|| fragmentation(&hit.line))
                .or_else(|| {
                    let frame = hit.frame.as_ref().filter(|_| sig.generic)?;
                    Some(format!("raised at {frame}"))
                });
            findings.push(Finding {
                id: sig.id.clone(),
                category: sig.category.clone(),
                severity: sig.severity,
                confidence: sig.confidence,
                score: if sig.noise {
                    0.0
                } else {
                    f64::from(sig.severity) * sig.confidence
                },
                line_no: hit.shown_no,
                first_line: hit.first,
                line: hit.line,
                count: hit.count,
                explanation: sig.explanation.clone(),
                fix: sig.fix.clone(),
                detail,
                noise: sig.noise,
                sympathetic: sig.sympathetic,
                generic: sig.generic,
            });
        }
        // A specific signature beats a generic one for the same lines (a CUDA segfault over
        // a plain segfault).
        let specific: Vec<(usize, String)> = findings
            .iter()
            .filter(|f| f.category != "segfault")
            .map(|f| (f.line_no, f.category.clone()))
            .collect();
        findings.retain(|f| {
            !(f.category == "segfault"
                && specific
                    .iter()
                    .any(|(l, c)| *l == f.line_no && c == "libcuda-segfault"))
        });
        // An OOM explains a gunicorn worker's death only if it killed that worker; when
        // pids are known on both sides and none match, the OOM was elsewhere and the
        // worker timeout is the cause.
        if let (Some(oom_pids), Some(worker_pids)) = (
            ["cgroup-oom", "host-oom"]
                .iter()
                .find_map(|c| pids_of.get(*c))
                .filter(|p| !p.is_empty()),
            pids_of
                .get("gunicorn-worker-timeout")
                .filter(|p| !p.is_empty()),
        ) {
            if oom_pids.is_disjoint(worker_pids) {
                for f in findings
                    .iter_mut()
                    .filter(|f| f.category == "cgroup-oom" || f.category == "host-oom")
                {
                    f.score *= 0.5;
                    f.detail =
                        Some("this OOM killed other processes, not the gunicorn workers".into());
                }
            }
        }
        let has_cause = findings
            .iter()
            .any(|f| !f.noise && !f.sympathetic && !f.generic);
        for f in &mut findings {
            if f.sympathetic && has_cause {
                f.score *= 0.5;
            }
        }
        findings.sort_by(|a, b| {
            a.noise
                .cmp(&b.noise)
                .then(b.score.total_cmp(&a.score))
                .then(a.first_line.cmp(&b.first_line))
        });
        Report {
            lines: self.n,
            findings,
            unrecognised: self.templates.into_sorted(),
        }
    }
}

/// PyTorch's allocator hint, turned into a suggestion with its numbers: memory reserved
/// but unallocated is fragmentation, which expandable segments fix.
fn fragmentation(line: &str) -> Option<String> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"([\d.]+ [KMGT]iB) is allocated by PyTorch, and ([\d.]+ [KMGT]iB) is reserved by PyTorch but unallocated")
            .expect("valid")
    });
    let c = re.captures(line)?;
    Some(format!(
        "PyTorch holds {} reserved but unallocated beside {} in use: fragmentation. Set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (steward's cuda_env = \"default\" does) before lowering the batch",
        &c[2], &c[1]
    ))
}

/// Explains a whole text at once.
pub fn explain_text(text: &[u8]) -> Report {
    let mut e = Explainer::new();
    // A final newline ends the last line; it does not start another.
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    if !text.is_empty() {
        for line in text.split(|&b| b == b'\n') {
            e.feed(line);
        }
    }
    e.finish()
}

/// The naive baseline (k8sgpt's log analyzer): the first line matching
/// `(?i)error|exception|fail`, and the category of whatever signature that line matches.
pub fn baseline_category(text: &[u8]) -> Option<String> {
    let re = regex::Regex::new(r"(?i)error|exception|fail").ok()?;
    let cat = catalogue();
    for raw in text.split(|&b| b == b'\n') {
        let line = normalise(raw);
        if re.is_match(&line) {
            let m = cat.set.matches(&line);
            return m
                .iter()
                .find(|i| !cat.owner[*i].1)
                .map(|i| cat.signatures[cat.owner[i].0].category.clone());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sigkill_guess_without_a_kernel_oom_is_a_timeout() {
        let log = b"[INFO] Booting worker with pid: 7\n[CRITICAL] WORKER TIMEOUT (pid:7)\n[ERROR] Worker (pid:7) was sent SIGKILL! Perhaps out of memory?\nThe value of the smallest subnormal for <class 'numpy.float64'> type is zero.\n";
        let r = explain_text(log);
        assert_eq!(r.top().unwrap().category, "gunicorn-worker-timeout");
        assert_eq!(r.top().unwrap().id, "gunicorn-worker-timeout");
        assert!(
            r.findings.last().unwrap().noise,
            "numpy's warning is labelled noise"
        );
        let with_oom = b"[CRITICAL] WORKER TIMEOUT (pid:7)\nkernel: Memory cgroup out of memory: Killed process 7 (gunicorn)\n[ERROR] Worker (pid:7) was sent SIGKILL! Perhaps out of memory?\n";
        assert_eq!(explain_text(with_oom).top().unwrap().category, "cgroup-oom");
    }

    #[test]
    fn an_oom_that_killed_someone_else_does_not_explain_a_worker_timeout() {
        let log = b"[CRITICAL] WORKER TIMEOUT (pid:7)\nkernel: Memory cgroup out of memory: Killed process 4242 (redis-server)\n[ERROR] Worker (pid:7) was sent SIGKILL! Perhaps out of memory?\n";
        let r = explain_text(log);
        assert_eq!(r.top().unwrap().category, "gunicorn-worker-timeout");
        let oom = r
            .findings
            .iter()
            .find(|f| f.category == "cgroup-oom")
            .unwrap();
        assert!(oom
            .detail
            .as_deref()
            .unwrap()
            .contains("not the gunicorn workers"));
    }

    #[test]
    fn the_allocator_hint_becomes_a_suggestion_with_numbers() {
        let r = explain_text(b"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB of which 1.12 GiB is free. Of the allocated memory 70.31 GiB is allocated by PyTorch, and 6.92 GiB is reserved by PyTorch but unallocated.\n");
        let d = r.top().unwrap().detail.clone().unwrap();
        assert!(
            d.contains("6.92 GiB reserved but unallocated beside 70.31 GiB"),
            "{d}"
        );
    }

    #[test]
    fn bad_input_never_panics() {
        let garbage: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let _ = explain_text(&garbage);
        let _ = explain_text(b"");
        let huge = vec![b'x'; 10 * 1024 * 1024];
        let r = explain_text(&huge);
        assert_eq!(r.lines, 1);
        let _ = explain_text(b"\xff\xfe CUDA out of memory \xc3\x28");
    }

    #[test]
    fn an_uncaught_python_exception_is_the_cause_with_its_type_message_and_frame() {
        let log = b"Traceback (most recent call last):\n  File \"/app/worker.py\", line 3, in <module>\n    cfg = open(\"config.json\")\nFileNotFoundError: [Errno 2] No such file or directory: 'config.json'\n";
        let r = explain_text(log);
        let f = r.top().expect("a finding");
        assert_eq!(f.category, "python-exception");
        assert!(f.line.starts_with("FileNotFoundError: [Errno 2]"), "{f:?}");
        assert_eq!(
            f.detail.as_deref(),
            Some("raised at File \"/app/worker.py\", line 3, in <module>")
        );
        assert!(r.unrecognised.is_empty(), "{:?}", r.unrecognised);
        let dotted = b"Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nModuleNotFoundError: No module named 'vllm'\n";
        let top = explain_text(dotted).one_line().unwrap();
        assert!(
            top.starts_with("python-exception: ModuleNotFoundError: No module named 'vllm'"),
            "{top}"
        );
        // A bare "Error:" log line or a name without a traceback is not an exception.
        assert!(explain_text(b"Error: disk quota\nKeyError: 'x'\n")
            .top()
            .is_none());
    }

    #[test]
    fn a_specific_cause_inside_a_traceback_outranks_the_exception() {
        let log = b"Traceback (most recent call last):\n  File \"t.py\", line 9, in step\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n";
        let r = explain_text(log);
        assert_eq!(r.top().unwrap().category, "cuda-oom");
        let engine = b"Traceback (most recent call last):\n  File \"v.py\", line 9, in run\nvllm.engine.async_llm_engine.AsyncEngineDeadError: Background loop has errored already.\n";
        assert_ne!(
            explain_text(engine).top().unwrap().category,
            "python-exception"
        );
    }

    #[test]
    fn xid_codes_are_explained_and_docker_json_is_unwrapped() {
        let r = explain_text(b"{\"log\":\"NVRM: Xid (PCI:0000:07:00): 79, pid=1, GPU has fallen off the bus.\\n\",\"stream\":\"stderr\"}\n");
        let f = r.top().unwrap();
        assert_eq!(f.category, "gpu-xid");
        assert!(
            f.detail.as_deref().unwrap().contains("fallen off the bus"),
            "{f:?}"
        );
    }
}

#[cfg(test)]
mod random_input {
    use super::*;

    /// Random lines built from pieces of real signatures, random bytes and separators:
    /// never a panic, and every finding points at a line that exists.
    #[test]
    fn random_mixtures_never_panic() {
        let pieces: &[&[u8]] = &[
            b"CUDA out of memory",
            b"NVRM: Xid (PCI:0000:07:00): ",
            b"WORKER TIMEOUT (pid:",
            b"\xff\xfe",
            b"{\"log\":\"",
            b"\"}",
            b"Segmentation fault",
            b"libcuda.so",
            b"\n",
            b"\r",
            b" ",
            b"[Tue Mar  3 02:11:45 2026]",
            b"0x7f",
            b"Address already in use",
            b"\x00",
            b"(?i)",
            b"\\",
            b"\xc3\x28",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let mut input = Vec::new();
            for _ in 0..(next() % 200) {
                if next() % 4 == 0 {
                    input.push(next() as u8);
                } else {
                    input.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
                }
            }
            let report = explain_text(&input);
            for f in &report.findings {
                assert!(f.line_no >= 1 && f.line_no <= report.lines);
            }
        }
    }
}
