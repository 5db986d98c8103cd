//! Top-1 accuracy on two corpora: the project's own cases (tests/corpus/) and, when
//! present (it is in CI), the shared corpus of real logs others posted in public issues,
//! read in place. Fails below 90% on either. Prints the naive baseline beside it.

use std::path::Path;

fn evaluate(dir: &Path) -> (usize, usize, usize, Vec<String>) {
    let index = std::fs::read_to_string(dir.join("index.tsv")).unwrap();
    let (mut total, mut ours, mut base, mut misses) = (0, 0, 0, Vec::new());
    for line in index.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, label) = (cols[0], cols[1]);
        let text = std::fs::read(dir.join(file)).unwrap();
        let report = steward_explain::explain_text(&text);
        let got = report
            .top()
            .map(|f| f.category.clone())
            .unwrap_or_else(|| "none".into());
        total += 1;
        if got == label {
            ours += 1;
        } else {
            misses.push(format!("{file}: expected {label}, got {got}"));
        }
        if steward_explain::baseline_category(&text).as_deref() == Some(label) {
            base += 1;
        }
    }
    (total, ours, base, misses)
}

fn check(name: &str, dir: &Path) {
    check_at(name, dir, 90.0);
}

/// As [`check`], failing under `floor` percent.
fn check_at(name: &str, dir: &Path, floor: f64) {
    let (total, ours, base, misses) = evaluate(dir);
    let pct = |n: usize| n as f64 * 100.0 / total as f64;
    println!(
        "{name}: steward explain {ours}/{total} ({:.0}%), naive baseline {base}/{total} ({:.0}%)",
        pct(ours),
        pct(base)
    );
    for m in &misses {
        println!("  miss: {m}");
    }
    assert!(
        pct(ours) >= floor,
        "{name}: top-1 accuracy {:.0}% is under {floor}%: {misses:?}",
        pct(ours)
    );
}

#[test]
fn own_corpus_top1_accuracy() {
    check(
        "own corpus",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus"),
    );
}

#[test]
fn shared_corpus_top1_accuracy() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/explain-corpus");
    if !dir.join("index.tsv").exists() {
        println!("shared corpus not found at {}; skipped", dir.display());
        return;
    }
    check("shared corpus", &dir);
}

/// 100 excerpts people posted in public issue threads (vLLM, SGLang, TGI, llama.cpp, Ollama,
/// Triton, ComfyUI, Celery, Dask, Prefect, Airflow, PyTorch DDP, Slurm, systemd, Kubernetes,
/// the kernel), gathered for this project with their sources in each `index.tsv`. The rules
/// were written against `dev/` (80); `held/` (20, gathered after the rules were written and
/// not read while writing them) measures how they carry over. A later round of rules needs
/// a fresh held-back set: once its misses are read, this one is part of dev.
#[test]
fn public_corpus_dev_top1_accuracy() {
    check(
        "public corpus, dev part",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/public/dev"),
    );
}

#[test]
fn public_corpus_held_back_top1_accuracy() {
    check_at(
        "public corpus, held-back part",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/public/held"),
        HELD_BACK_FLOOR,
    );
}

/// The aim, which the held-back part reached when it was measured (18 of 20; see the
/// README).
const HELD_BACK_FLOOR: f64 = 90.0;

/// The kernel's OOM reports in the public corpus (syslog lines, a cgroup OOM and a host
/// OOM) read into kills with their victims, as the agent's kernel-log follower reads them.
#[test]
fn the_kernels_oom_reports_in_the_corpus_read_as_kills() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/explain-corpus");
    if !dir.join("index.tsv").exists() {
        println!("shared corpus not found at {}; skipped", dir.display());
        return;
    }
    let kills = |name: &str| -> Vec<steward_explain::OomKill> {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let mut r = steward_explain::OomReader::default();
        text.lines().filter_map(|l| r.feed(l)).collect()
    };
    let cgroup = kills("06-cgroup-oom.log");
    assert!(cgroup.len() >= 4, "{cgroup:?}");
    assert!(
        cgroup
            .iter()
            .all(|k| k.command == "python3" && k.anon_rss == Some(4292 * 1024)),
        "{cgroup:?}"
    );
    let host = kills("16-host-oom.log");
    assert!(
        host.iter().any(|k| k.command == "(resolved)"),
        "a name in parentheses stays whole: {host:?}"
    );
}
