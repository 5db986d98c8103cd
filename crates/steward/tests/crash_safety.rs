//! SIGKILL the agent at random moments during a 10,000-job run, restart it each time: in
//! the end every job succeeded once in the output directory, none was lost, and only jobs
//! in flight at a kill ran again.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const JOBS: usize = 10_000;
const KILLS: usize = 5;
const SLOTS: usize = 4;

fn succeeded(dir: &std::path::Path) -> u64 {
    let out = steward(&["queue", "-f", "steward.toml", "stats", "--json"], dir);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .map_or(0, |v| v["counts"]["succeeded"].as_u64().unwrap_or(0))
}

#[test]
fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    for i in 0..JOBS {
        std::fs::write(inputs.join(format!("{i:05}.txt")), format!("job {i}\n")).unwrap();
    }
    std::fs::write(
        dir.path().join("steward.toml"),
        format!(
            r#"
[pipelines.copy]
command = ["cp", "{{input}}", "{{output_dir}}/{{name}}"]
inputs = ["in"]
output_dir = "out"
expect_output = "{{output_dir}}/{{name}}"
replicas = {SLOTS}
max_attempts = 10
backoff = {{ initial = "10ms", max = "10ms" }}
"#
        ),
    )
    .unwrap();
    let tag = format!("crash-{}", std::process::id());
    let start = || {
        Command::new(BIN)
            .args(["run", "-f", "steward.toml", "--until-empty"])
            .current_dir(dir.path())
            .env("STEWARD_TEST_TAG", &tag)
            .env("STEWARD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.path().join("agent.log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap()
    };
    struct Sweep(String);
    impl Drop for Sweep {
        fn drop(&mut self) {
            kill_tagged(&self.0);
        }
    }
    let _sweep = Sweep(tag.clone());

    let mut kills = 0;
    let mut last = 0;
    while kills < KILLS {
        let mut agent = start();
        // Wait for real progress, then kill at a random moment a little later.
        let target = last + 200 + (kills as u64 * 37) % 300;
        wait_until("progress before the kill", LONG, || {
            succeeded(dir.path()) >= target || agent.try_wait().unwrap().is_some()
        });
        std::thread::sleep(Duration::from_millis(fastrand_ms()));
        if agent.try_wait().unwrap().is_some() {
            break; // finished before we could kill it; the checks below still hold
        }
        agent.kill().unwrap();
        agent.wait().unwrap();
        kills += 1;
        last = succeeded(dir.path());
    }
    assert!(
        kills >= KILLS,
        "only {kills} kills happened before the run finished; make the run longer\n{}",
        std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default()
    );

    let status = start().wait().unwrap();
    assert!(
        status.success(),
        "the final run did not account for every job"
    );
    assert_eq!(succeeded(dir.path()), JOBS as u64);

    let outputs: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(outputs.len(), JOBS, "one output per job");
    for p in &outputs {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let i: usize = name.trim_end_matches(".txt").parse().unwrap();
        assert_eq!(std::fs::read_to_string(p).unwrap(), format!("job {i}\n"));
    }
    let ls = steward(
        &[
            "queue",
            "-f",
            "steward.toml",
            "ls",
            "--json",
            "--limit",
            "20000",
        ],
        dir.path(),
    );
    let jobs: Vec<serde_json::Value> = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(jobs.len(), JOBS);
    let repeated = jobs
        .iter()
        .filter(|j| j["attempts"].as_u64().unwrap() > 1)
        .count();
    assert!(
        repeated <= kills * SLOTS,
        "{repeated} jobs ran more than once, but at most {} were in flight at the kills",
        kills * SLOTS
    );
}

/// A kill moment between 0 and 150 ms after the progress mark, from the clock's low bits.
fn fastrand_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros() as u64 % 150)
}
