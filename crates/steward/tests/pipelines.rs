//! Pipelines and the queue end to end: the real binary, real worker processes, a real
//! SQLite file. Poison inputs, hung workers, re-enqueueing, confinement, a damaged queue.

mod common;
use common::*;
use std::path::Path;

/// A temp dir with `n` small inputs in `in/` and `toml` as its steward.toml.
fn with_inputs(n: usize, toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_inputs(&dir.path().join("in"), n);
    std::fs::write(dir.path().join("steward.toml"), toml).unwrap();
    dir
}

/// A config whose one pipeline takes jobs from queue `docs`, with 4 attempts a job.
const DOCS_PIPELINE: &str = "[pipelines.docs]\ncommand = [\"true\"]\nmax_attempts = 4\n";

/// The first event of `kind` the run in `dir` left in its events.jsonl.
fn first_event(dir: &Path, kind: &str) -> serde_json::Value {
    let events = std::fs::read_to_string(dir.join(".steward/events.jsonl")).unwrap();
    events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event in {events}"))
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

#[test]
fn a_poison_input_is_quarantined_with_its_reason_and_the_rest_succeed() {
    let dir = tempfile::tempdir().unwrap();
    write_inputs(&dir.path().join("in"), 10);
    std::fs::write(dir.path().join("in/poison.txt"), "POISON\n").unwrap();
    std::fs::write(
        dir.path().join("steward.toml"),
        r#"
[pipelines.conv]
# Crashes (SIGSEGV) on the poison file, every time; copies everything else.
command = ["sh", "-c", "if grep -q POISON \"$1\"; then echo 'bad xref' >&2; kill -SEGV $$; fi; cp \"$1\" \"$2\"", "job", "{input}", "{output_dir}/{name}"]
inputs = ["in"]
output_dir = "out"
expect_output = "{output_dir}/{name}"
replicas = 2
max_attempts = 3
backoff = { initial = "50ms", max = "100ms" }
quarantine_dir = "quarantine"
"#,
    )
    .unwrap();
    let out = run_until_empty(dir.path());
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("conv: 10 succeeded, 1 quarantined"), "{text}");
    assert!(text.contains("poison.txt: killed by SIGSEGV"), "{text}");
    assert_eq!(
        std::fs::read_dir(dir.path().join("out")).unwrap().count(),
        10
    );
    assert!(
        !dir.path().join("in/poison.txt").exists(),
        "moved out of the inputs"
    );
    let reason: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("quarantine/poison.txt.reason.json")).unwrap(),
    )
    .unwrap();
    let attempts = reason["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    for a in attempts {
        assert_eq!(a["class"]["class"], "signaled", "{a}");
        assert_eq!(a["class"]["name"], "SIGSEGV");
        assert!(
            a["stderr_tail"].as_str().unwrap().contains("bad xref"),
            "{a}"
        );
    }
    // Running again finds nothing to do: every input is done or quarantined.
    let again = run_until_empty(dir.path());
    assert!(again.status.success());
    assert!(
        stdout(&again).contains("10 succeeded, 1 quarantined"),
        "{}",
        stdout(&again)
    );
    let events = std::fs::read_to_string(dir.path().join(".steward/events.jsonl")).unwrap();
    assert_eq!(
        events.matches("\"event\":\"job_failed\"").count(),
        3,
        "no new attempt on the second run"
    );
}

#[test]
fn a_hung_worker_is_killed_at_the_timeout_and_the_job_retried() {
    let dir = with_inputs(
        3,
        r#"
[pipelines.slow]
# The first attempt at each job hangs forever; the second works.
command = ["sh", "-c", "if [ \"$3\" = 1 ]; then sleep 1000; fi; cp \"$1\" \"$2\"", "job", "{input}", "{output_dir}/{name}", "{attempt}"]
inputs = ["in"]
output_dir = "out"
replicas = 3
timeout = "300ms"
backoff = { initial = "10ms", max = "10ms" }
"#,
    );
    let out = run_until_empty(dir.path());
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("slow: 3 succeeded, 0 quarantined"),
        "{}",
        stdout(&out)
    );
    let events = std::fs::read_to_string(dir.path().join(".steward/events.jsonl")).unwrap();
    assert_eq!(
        events.matches("\"class\":\"timed_out\"").count(),
        3,
        "{events}"
    );
    let ls = json_of(&steward(
        &["queue", "-f", "steward.toml", "ls", "--json"],
        dir.path(),
    ));
    for j in ls.as_array().unwrap() {
        assert_eq!(j["attempts"], 2, "{j}");
    }
    // No sleeping worker survives.
    let leftover = std::process::Command::new("pgrep")
        .args(["-f", "sleep 1000"])
        .output()
        .unwrap();
    let pids = String::from_utf8_lossy(&leftover.stdout);
    for pid in pids.split_whitespace() {
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&env).contains(&dir.path().display().to_string()),
            "a hung worker survived: {pid}"
        );
    }
}

#[test]
fn enqueueing_the_same_directory_twice_adds_nothing_and_rebuild_done_reconciles() {
    let dir = tempfile::tempdir().unwrap();
    write_inputs(&dir.path().join("in"), 20);
    std::fs::write(dir.path().join("steward.toml"), DOCS_PIPELINE).unwrap();
    let q = |args: &[&str]| queue_cli(dir.path(), args);
    let out = q(&["add", "docs", "in", "--glob", "*.txt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("docs: 20 enqueued, 0 already queued"),
        "{}",
        stdout(&out)
    );
    let out = q(&["add", "docs", "in"]);
    assert!(
        stdout(&out).contains("docs: 0 enqueued, 20 already queued"),
        "{}",
        stdout(&out)
    );

    // Outputs made elsewhere (the done-set rebuilt after a queue was lost): 5 jobs have theirs.
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    for i in 0..5 {
        std::fs::write(dir.path().join(format!("out/doc-{i:05}.json")), "{}").unwrap();
    }
    let out = q(&[
        "rebuild-done",
        "docs",
        "--outputs",
        "out",
        "--pattern",
        "{stem}.json",
    ]);
    assert!(
        stdout(&out).contains("5 job(s) marked succeeded"),
        "{}",
        stdout(&out)
    );
    let stats = json_of(&q(&["stats", "docs", "--json"]));
    assert_eq!(stats["counts"]["succeeded"], 5);
    assert_eq!(stats["counts"]["pending"], 15);
    // An output that disappears is reported, and requeued on request.
    std::fs::remove_file(dir.path().join("out/doc-00000.json")).unwrap();
    let out = q(&[
        "rebuild-done",
        "docs",
        "--outputs",
        "out",
        "--pattern",
        "{stem}.json",
        "--requeue-missing",
    ]);
    assert!(
        stdout(&out).contains("1 job(s) marked succeeded have no output"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("1 job(s) requeued"),
        "{}",
        stdout(&out)
    );
    let out = q(&["add", "docs", "in"]);
    assert!(
        stdout(&out).contains("0 enqueued, 16 already queued, 4 already done"),
        "{}",
        stdout(&out)
    );
    let csv = stdout(&q(&["export", "--csv"]));
    assert_eq!(csv.lines().count(), 21, "{csv}");
}

#[test]
fn a_truncated_queue_is_refused_and_restore_brings_it_back() {
    let dir = tempfile::tempdir().unwrap();
    write_inputs(&dir.path().join("in"), 300);
    std::fs::write(dir.path().join("steward.toml"), DOCS_PIPELINE).unwrap();
    let q = |args: &[&str]| queue_cli(dir.path(), args);
    assert!(q(&["add", "docs", "in"]).status.success());
    let out = q(&["backup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let db = dir.path().join(".steward/queue.db");
    rusqlite_checkpoint(&db);
    let len = std::fs::metadata(&db).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    let out = q(&["stats"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("queue.db is damaged"), "{err}");
    assert!(
        err.contains("restore it with `steward queue restore`"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let out = q(&["restore"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("(300 jobs)"), "{}", stdout(&out));
    let stats = json_of(&q(&["stats", "--json"]));
    assert_eq!(stats["counts"]["pending"], 300);
}

/// Folds the WAL into the main file, as a clean shutdown would, using the sqlite3 the
/// queue itself links (through the CLI's backup command's store) — here via python3.
fn rusqlite_checkpoint(db: &Path) {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA wal_checkpoint(TRUNCATE)'); c.close()", db.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn a_stall_is_reported_with_its_jobs_and_progress_json_tracks_the_run() {
    let dir = with_inputs(
        2,
        r#"
[pipelines.stuck]
# Every job takes 2 s: with a 500 ms stall window, nothing completes in time.
command = ["sh", "-c", "sleep 2; cp \"$1\" \"$2\"", "job", "{input}", "{output_dir}/{name}"]
inputs = ["in"]
output_dir = "out"
replicas = 2
stall_timeout = "500ms"
"#,
    );
    let out = run_until_empty(dir.path());
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let stall = first_event(dir.path(), "stall");
    assert_eq!(stall["pipeline"], "stuck");
    assert_eq!(stall["jobs"].as_array().unwrap().len(), 2, "{stall}");
    let mut replicas: Vec<String> = stall["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    replicas.sort();
    assert_eq!(replicas, vec!["stuck#0", "stuck#1"]);
    let progress: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(".steward/progress.json")).unwrap())
            .unwrap();
    assert_eq!(
        progress["pipelines"][0]["stats"]["counts"]["succeeded"], 2,
        "{progress}"
    );
}

#[test]
fn on_stall_restart_kills_a_stalled_job_and_retries_it() {
    let dir = with_inputs(
        1,
        r#"
[pipelines.stuck]
# The first attempt hangs (a deadlock, with no timeout for an hour); the retry works.
command = ["sh", "-c", "if [ \"$3\" = 1 ]; then sleep 3600; fi; cp \"$1\" \"$2\"", "job", "{input}", "{output_dir}/{name}", "{attempt}"]
inputs = ["in"]
output_dir = "out"
timeout = "1h"
stall_timeout = "500ms"
on_stall = "restart"
backoff = { initial = "50ms", max = "100ms" }
"#,
    );
    let out = run_until_empty(dir.path());
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("stuck: 1 succeeded, 0 quarantined"), "{text}");
    let stall = first_event(dir.path(), "stall");
    assert_eq!(stall["restarted"], true, "{stall}");
    assert_eq!(stall["replicas"][0], "stuck", "{stall}");
    let failed = first_event(dir.path(), "job_failed");
    assert_eq!(failed["class"], "stalled", "{failed}");
    assert_eq!(
        std::fs::read_dir(dir.path().join("out")).unwrap().count(),
        1
    );
}

#[test]
fn the_agent_backs_the_queue_up_every_backup_interval_and_keeps_the_newest() {
    let agent = Agent::start(
        r#"
[queue]
backup_interval = "1s"
backups_kept = 2

[pipelines.idle]
command = ["true", "{input}"]
"#,
    );
    let backups = agent.state_dir().join("backups");
    let names = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&backups)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".db"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    wait_until("two backups", LONG, || names().len() >= 2);
    let first = names();
    wait_until("a third backup to replace the oldest", LONG, || {
        let now = names();
        assert!(now.len() <= 2, "only the newest 2 are kept: {now:?}");
        now != first
    });
}

#[test]
fn a_job_that_runs_out_of_memory_is_classified_oom_killed() {
    if !require_cgroups("a_job_that_runs_out_of_memory_is_classified_oom_killed") {
        return;
    }
    let dir = with_inputs(
        1,
        r#"
[pipelines.hog]
# Grows by 8 MiB steps until the kernel kills it at the slot's 64 MiB limit.
command = ["python3", "-c", "import time\nx=[]\nwhile True:\n    x.append(bytearray(8<<20)); time.sleep(0.01)", "{input}"]
inputs = ["in"]
memory = "64MiB"
max_attempts = 1
"#,
    );
    let out = run_until_empty(dir.path());
    let text = stdout(&out);
    assert!(
        text.contains("hog: 0 succeeded, 1 quarantined"),
        "{text}\n{}",
        stderr(&out)
    );
    let failed = first_event(dir.path(), "job_failed");
    assert_eq!(failed["class"], "oom_killed", "{failed}");
    assert_eq!(failed["limit"], 64u64 << 20, "{failed}");
}

#[test]
fn queue_commands_work_while_the_agent_runs_and_it_drains_what_they_add() {
    let agent = Agent::start(
        r#"
[pipelines.docs]
command = ["cp", "{input}", "{output_dir}/{name}"]
output_dir = "out"
replicas = 2
"#,
    );
    write_inputs(&agent.path().join("in"), 30);
    // The CLI opens queue.db beside the running agent; SQLite's locking keeps them apart.
    let out = queue_cli(agent.path(), &["add", "docs", "in"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("docs: 30 enqueued"),
        "{}",
        stdout(&out)
    );
    wait_until("the agent to run every added job", LONG, || {
        let stats = json_of(&queue_cli(agent.path(), &["stats", "docs", "--json"]));
        stats["counts"]["succeeded"] == 30
    });
    assert_eq!(
        std::fs::read_dir(agent.path().join("out")).unwrap().count(),
        30
    );
    // Adding the same files again while it runs: nothing new, every one already done.
    let out = queue_cli(agent.path(), &["add", "docs", "in"]);
    assert!(
        stdout(&out).contains("0 enqueued, 0 already queued, 30 already done"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn queue_add_takes_the_pipelines_attempts_and_refuses_a_queue_nobody_takes() {
    let dir = tempfile::tempdir().unwrap();
    write_inputs(&dir.path().join("in"), 2);
    std::fs::write(dir.path().join("steward.toml"), DOCS_PIPELINE).unwrap();
    let q = |args: &[&str]| queue_cli(dir.path(), args);
    let out = q(&["add", "dcos", "in"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no pipeline of")
            && stderr(&out).contains("takes jobs from queue \"dcos\" (its pipelines take: docs)"),
        "{}",
        stderr(&out)
    );
    assert!(
        !dir.path().join(".steward/queue.db").exists(),
        "nothing was created"
    );
    let out = q(&["add", "docs", "in"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let jobs = json_of(&q(&["ls", "--json"]));
    assert!(
        jobs.as_array()
            .unwrap()
            .iter()
            .all(|j| j["max_attempts"] == 4),
        "{jobs}"
    );
    let out = q(&["add", "docs", "in", "--max-attempts", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--max-attempts"), "{}", stderr(&out));
    let out = q(&["add", "other", "in", "--force", "--max-attempts", "7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let jobs = json_of(&q(&["ls", "--queue", "other", "--json"]));
    assert!(
        jobs.as_array()
            .unwrap()
            .iter()
            .all(|j| j["max_attempts"] == 7),
        "{jobs}"
    );
}

#[test]
fn run_until_empty_on_a_full_disk_stops_saying_how_to_go_on_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_inputs(&dir.path().join("in"), 30);
    let state = dir.path().join("state");
    let _fs = Tmpfs::mount(&state, "size=8m");
    std::fs::write(
        dir.path().join("steward.toml"),
        "state_dir = \"state\"\n[pipelines.p]\ncommand = [\"sh\", \"-c\", \"sleep 0.2; cp \\\"$0\\\" \\\"$1\\\"\", \"{input}\", \"{output_dir}/{name}\"]\ninputs = [\"in\"]\nexpect_output = \"{output_dir}/{name}\"\n",
    )
    .unwrap();
    let mut run = std::process::Command::new(BIN)
        .args(["run", "-f", "steward.toml", "--until-empty"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let succeeded = || {
        let out = queue_cli(dir.path(), &["stats", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v["counts"]["succeeded"].as_u64())
            .unwrap_or(0)
    };
    wait_until("two jobs to succeed", LONG, || succeeded() >= 2);
    // The disk fills up mid-run.
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", state.join("filler").display()))
        .stderr(std::process::Stdio::null())
        .status();
    // It must stop by itself (it used to retry forever).
    let deadline = std::time::Instant::now() + LONG;
    while run.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = run.kill();
            panic!("run --until-empty did not stop on a full disk");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = run.wait_with_output().unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr(&out));
    assert!(text.contains("p: cannot make progress"), "{text}");
    assert!(text.contains("No job was lost"), "{text}");
    // What was done stays done: with the space back, a second run finishes every job.
    std::fs::remove_file(state.join("filler")).unwrap();
    let out = steward(&["run", "-f", "steward.toml", "--until-empty"], dir.path());
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("p: 30 succeeded"), "{}", stdout(&out));
}
