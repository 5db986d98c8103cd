//! `steward explain` from the command line: files, stdin, --since, --json.

mod common;
use common::*;
use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn explains_a_file_ranks_the_cause_and_labels_the_noise() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker log (1).txt");
    std::fs::write(
        &log,
        "/usr/lib/python3/dist-packages/numpy/core/getlimits.py:499: UserWarning: The value of the smallest subnormal for <class 'numpy.float64'> type is zero.\n\
         [2026-03-01 10:00:00 +0000] [1] [CRITICAL] WORKER TIMEOUT (pid:8)\n\
         [2026-03-01 10:00:01 +0000] [1] [ERROR] Worker (pid:8) was sent SIGKILL! Perhaps out of memory?\n\
         something odd failed at step 3\nsomething odd failed at step 4\n",
    )
    .unwrap();
    let out = steward(&["explain", log.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let first = text.lines().next().unwrap();
    assert_eq!(first, "cause: gunicorn-worker-timeout at line 2", "{text}");
    assert!(
        text.contains("symptom: gunicorn-worker-timeout at line 3"),
        "{text}"
    );
    assert!(text.contains("noise: noise at line 1"), "{text}");
    assert!(
        text.contains("unrecognised errors:\n  line 4 (x2): something odd failed at step 3"),
        "{text}"
    );

    let json = steward(&["explain", "--json", log.to_str().unwrap()], dir.path());
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["findings"][0]["category"], "gunicorn-worker-timeout");
    assert_eq!(report["lines"], 5);
}

#[test]
fn reads_stdin_and_keeps_only_recent_lines() {
    let mut child = Command::new(BIN)
        .args(["explain", "--since", "2026-03-02T00:00:00Z", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"2026-03-01T10:00:00Z app: torch.OutOfMemoryError: CUDA out of memory\n2026-03-02T10:00:00Z app: OSError: [Errno 98] Address already in use\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = stdout(&out);
    assert!(text.starts_with("cause: port-in-use"), "{text}");
    assert!(
        !text.contains("cuda-oom"),
        "the older line is left out: {text}"
    );
    let bad = steward(&["explain", "/no/such/file.log"], std::path::Path::new("/"));
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("cannot read /no/such/file.log"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn since_over_a_line_with_a_multibyte_character_in_its_time_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("odd.log");
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    std::fs::write(
        &log,
        format!(
            "2026-03-02T10:14:0é rest\n{now} app: OSError: [Errno 98] Address already in use\n"
        ),
    )
    .unwrap();
    let out = steward(
        &["explain", "--since", "1h", log.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("cause: port-in-use"),
        "{}",
        stdout(&out)
    );
}
