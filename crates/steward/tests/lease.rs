//! Lease mode with the real Python client (clients/python/steward_worker.py) against the
//! real agent: a worker that dies holding a job, and one that hangs past the timeout.

mod common;
use common::*;

fn client_dir() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../clients/python")
        .canonicalize()
        .unwrap()
        .display()
        .to_string()
}

fn setup(worker: &str, extra: &str, inputs: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    for i in 0..inputs {
        std::fs::write(
            dir.path().join(format!("in/{i:03}.txt")),
            format!("doc {i}\n"),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("worker.py"), worker).unwrap();
    std::fs::write(
        dir.path().join("steward.toml"),
        format!(
            r#"
[pipelines.lw]
mode = "lease"
worker = ["python3", "worker.py"]
env = {{ PYTHONPATH = "{}", PYTHONUNBUFFERED = "1" }}
inputs = ["in"]
replicas = 2
backoff = {{ initial = "50ms", max = "100ms" }}
quarantine_dir = "quarantine"
{extra}
"#,
            client_dir()
        ),
    )
    .unwrap();
    dir
}

#[test]
fn a_worker_that_dies_holding_a_job_fails_that_job_and_the_rest_complete() {
    let dir = setup(
        r#"
import os, signal
from steward_worker import Worker
os.makedirs("out", exist_ok=True)
def handle(job):
    text = open(job.input).read()
    if text.startswith("doc 3"):
        os.kill(os.getpid(), signal.SIGSEGV)
    job.progress(0.5, "halfway")
    open(os.path.join("out", os.path.basename(job.input)), "w").write(text)
Worker().run(handle, wait=5)
"#,
        "max_attempts = 2",
        12,
    );
    let out = steward(&["run", "-f", "steward.toml", "--until-empty"], dir.path());
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("lw: 11 succeeded, 1 quarantined"), "{text}");
    assert!(text.contains("003.txt: lw#"), "{text}");
    assert!(
        text.contains("died holding it: killed by SIGSEGV"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("out")).unwrap().count(),
        11
    );
    let reason: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("quarantine/003.txt.reason.json")).unwrap(),
    )
    .unwrap();
    let owners: Vec<&str> = reason["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["owner"].as_str().unwrap())
        .collect();
    assert_eq!(owners.len(), 2);
    assert_ne!(owners[0], owners[1], "the retry went to the other replica");
}

/// A worker whose first try of `001.txt` never returns (its heartbeats still go out, from
/// the client's thread); every other try writes its output.
const HANGS_ON_FIRST_TRY: &str = r#"
import os, time
from steward_worker import Worker
os.makedirs("out", exist_ok=True)
def handle(job):
    if job.attempt == 1 and job.input.endswith("001.txt"):
        time.sleep(3600)
    open(os.path.join("out", os.path.basename(job.input)), "w").write("ok")
Worker().run(handle, wait=5)
"#;

/// `steward run --until-empty` in `dir`, which must succeed with all 4 inputs done; the
/// events it left.
fn run_all_four(dir: &std::path::Path) -> String {
    let out = steward(&["run", "-f", "steward.toml", "--until-empty"], dir);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("lw: 4 succeeded, 0 quarantined"), "{text}");
    std::fs::read_to_string(dir.join(".steward/events.jsonl")).unwrap()
}

#[test]
fn a_job_past_its_timeout_restarts_its_replica_and_is_retried() {
    let dir = setup(HANGS_ON_FIRST_TRY, "timeout = \"1s\"\nmax_attempts = 3", 4);
    let events = run_all_four(dir.path());
    assert!(
        events.contains("\"event\":\"job_failed\",\"job\":2")
            && events.contains("\"class\":\"timed_out\""),
        "{events}"
    );
    assert!(
        events.contains("\"event\":\"stopping\""),
        "the hung replica was restarted: {events}"
    );
}

#[test]
fn on_stall_restart_restarts_the_replica_holding_a_stalled_job() {
    // No timeout for an hour and heartbeats keep coming: only the stall watchdog sees it.
    let dir = setup(
        HANGS_ON_FIRST_TRY,
        "timeout = \"1h\"\nstall_timeout = \"1s\"\non_stall = \"restart\"\nmax_attempts = 3",
        4,
    );
    let events = run_all_four(dir.path());
    assert!(
        events.contains("\"event\":\"stall\"") && events.contains("\"restarted\":true"),
        "{events}"
    );
    assert!(events.contains("\"class\":\"stalled\""), "{events}");
    assert!(
        events.contains("\"event\":\"stopping\""),
        "the stalled replica was restarted: {events}"
    );
}

/// A worker that first tries the API the wrong ways, records what it was answered, then
/// works normally.
const PROBES_THE_API: &str = r##"
import json, os, urllib.request, urllib.error
from steward_worker import Worker
os.makedirs("out", exist_ok=True)
w = Worker()
def raw(path, data, headers=None):
    h = {"Authorization": f"Bearer {w.token}", "Content-Type": "application/json"}
    h.update(headers or {})
    req = urllib.request.Request(w.url + path, data=data, method="POST", headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
if w.name.endswith("#0"):
    job = w.lease(wait=5)
    answers = {
        "big": raw(f"/v1/jobs/{job.id}/progress", b"{" + b" " * (2 << 20) + b"}"),
        "bad_json": raw(f"/v1/jobs/{job.id}/progress", b"{not json"),
        "no_attempt": raw(f"/v1/jobs/{job.id}/heartbeat", b"{}"),
        "wrong_attempt": raw(f"/v1/jobs/{job.id}/complete", json.dumps({"attempt": job.attempt + 7}).encode()),
        "other_queue": raw("/v1/queues/elsewhere/lease", b""),
        "no_token": raw(f"/v1/queues/{w.queue}/lease", b"", {"Authorization": ""}),
        "wrong_token": raw(f"/v1/queues/{w.queue}/lease", b"", {"Authorization": "Bearer 0123456789abcdef"}),
        "someone_else": raw(f"/v1/queues/{w.queue}/lease", b"", {"X-Steward-Worker": "lw#1"}),
    }
    open("answers.json", "w").write(json.dumps(answers))
    open(os.path.join("out", os.path.basename(job.input)), "w").write("ok")
    job.complete()
else:
    # Leave the first job to #0 so the probes always have one to aim at.
    import time
    deadline = time.monotonic() + 60
    while not os.path.exists("answers.json") and time.monotonic() < deadline:
        time.sleep(0.05)
def handle(job):
    open(os.path.join("out", os.path.basename(job.input)), "w").write("ok")
w.run(handle, wait=5)
"##;

#[test]
fn the_lease_api_refuses_what_it_cannot_take_and_answers_why() {
    let dir = setup(PROBES_THE_API, "max_attempts = 2", 4);
    run_all_four(dir.path());
    let answers: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("answers.json")).unwrap()).unwrap();
    let status = |k: &str| answers[k][0].as_u64().unwrap();
    let text = |k: &str| answers[k][1].as_str().unwrap().to_string();
    assert_eq!(status("big"), 413, "{}", text("big"));
    assert_eq!(status("bad_json"), 400, "{}", text("bad_json"));
    assert!(
        text("bad_json").contains("not JSON"),
        "{}",
        text("bad_json")
    );
    assert_eq!(status("no_attempt"), 400);
    assert!(
        text("no_attempt").contains("attempt"),
        "{}",
        text("no_attempt")
    );
    assert_eq!(
        status("wrong_attempt"),
        409,
        "fenced: {}",
        text("wrong_attempt")
    );
    assert_eq!(status("other_queue"), 404, "{}", text("other_queue"));
    // Without this replica's own secret nothing can take or finish its jobs.
    assert_eq!(status("no_token"), 401, "{}", text("no_token"));
    assert!(
        text("no_token").contains("STEWARD_TOKEN"),
        "{}",
        text("no_token")
    );
    assert_eq!(status("wrong_token"), 401);
    assert_eq!(status("someone_else"), 403, "{}", text("someone_else"));
}

#[test]
fn a_lease_completion_without_its_expected_output_is_a_failed_attempt() {
    // The worker completes without writing anything: not done.
    let dir = setup(
        r#"
from steward_worker import Worker
Worker().run(lambda job: None, wait=5)
"#,
        "max_attempts = 2\nexpect_output = \"{output_dir}/{name}\"",
        2,
    );
    let out = steward(&["run", "-f", "steward.toml", "--until-empty"], dir.path());
    let text = stdout(&out);
    assert!(
        text.contains("lw: 0 succeeded, 2 quarantined"),
        "{text}\n{}",
        stderr(&out)
    );
    assert!(text.contains("is missing or empty"), "{text}");
}

#[test]
fn a_process_without_the_token_cannot_touch_the_lease_api() {
    // The worker holds its job; a local process that reads STEWARD_URL but not the secret
    // (here: the same worker asking without it) gets 401 and changes nothing.
    let dir = setup(
        r#"
import json, os, urllib.request, urllib.error
from steward_worker import Worker
os.makedirs("out", exist_ok=True)
w = Worker()
def raw(path):
    req = urllib.request.Request(w.url + path, data=b"{\"attempt\": 1}", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
def handle(job):
    open("intruder.json", "w").write(json.dumps([raw(f"/v1/jobs/{job.id}/complete"), raw(f"/v1/queues/{w.queue}/lease")]))
    open(os.path.join("out", os.path.basename(job.input)), "w").write("ok")
w.run(handle, wait=5)
"#,
        "max_attempts = 1",
        1,
    );
    let out = steward(&["run", "-f", "steward.toml", "--until-empty"], dir.path());
    assert!(stdout(&out).contains("lw: 1 succeeded"), "{}", stdout(&out));
    let codes: Vec<u16> =
        serde_json::from_slice(&std::fs::read(dir.path().join("intruder.json")).unwrap()).unwrap();
    assert_eq!(codes, [401, 401]);
}

#[test]
fn a_lease_worker_opens_a_file_whose_name_is_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let dir = setup(
        r#"
import os, shutil
from steward_worker import Worker
os.makedirs("out", exist_ok=True)
def handle(job):
    shutil.copy(job.input, os.path.join("out", os.path.basename(job.input)))
Worker().run(handle, wait=5)
"#,
        "max_attempts = 1",
        1,
    );
    let odd = std::ffi::OsStr::from_bytes(b"\xff\xfe-x.txt");
    std::fs::write(dir.path().join("in").join(odd), "odd\n").unwrap();
    let out = steward(&["run", "-f", "steward.toml", "--until-empty"], dir.path());
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("lw: 2 succeeded"), "{}", stdout(&out));
    assert!(dir.path().join("out").join(odd).exists());
}
