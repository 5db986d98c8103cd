//! `steward import` end to end: the real binary on compose files, its output checked by
//! `config check` and `plan`, and the incident pipeline's import run by `up` on two fake
//! GPUs, where its workers start one after another on each GPU as the compose file's
//! hand-written chain intended.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn compose(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../steward-import/tests/compose")
        .join(name)
}

/// The incident-style pipeline of the README and `examples/compose-import/`.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/compose-import")
        .join(name)
}

/// Imports `file` into `dir/steward.toml`; returns the report.
fn import_to(file: &Path, dir: &Path, extra: &[&str]) -> String {
    let out_file = dir.join("steward.toml");
    let mut args = vec![
        "import",
        file.to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = steward(&args, dir);
    assert!(
        out.status.success(),
        "import of {} failed: {}",
        file.display(),
        stderr(&out)
    );
    stderr(&out)
}

#[test]
fn every_import_passes_config_check_and_the_incident_shows_its_admission() {
    let mut files = vec![
        example("compose.yml"),
        compose("web.yml"),
        compose("forms.yml"),
    ];
    let mut public: Vec<PathBuf> = std::fs::read_dir(compose("public"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    public.sort();
    files.extend(public);
    for file in &files {
        let dir = tempfile::tempdir().unwrap();
        import_to(file, dir.path(), &[]);
        // Written for another host (the programs of its images are not on this one).
        let check = steward(
            &["config", "check", "--no-host", "steward.toml"],
            dir.path(),
        );
        assert!(
            check.status.success(),
            "{}: {}",
            file.display(),
            stderr(&check)
        );
    }
    // forms.yml runs only programs this host has: the whole check, host included.
    let dir = tempfile::tempdir().unwrap();
    import_to(&compose("forms.yml"), dir.path(), &[]);
    let check = steward(&["config", "check", "steward.toml"], dir.path());
    assert!(check.status.success(), "{}", stderr(&check));

    // The incident's 7 workers at 12 GiB each: the plan compose never made.
    let dir = tempfile::tempdir().unwrap();
    import_to(&example("compose.yml"), dir.path(), &[]);
    let plan = std::process::Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["plan", "-f", "steward.toml"])
        .env("STEWARD_FAKE_GPUS", "2")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&plan), stderr(&plan));
    assert!(
        text.contains("pipeline-gpu0#4") && text.contains("84.00 GiB"),
        "{text}"
    );
    assert!(text.contains("admission"), "{text}");
}

#[test]
fn the_incident_pipeline_imported_starts_its_workers_one_after_another_per_gpu() {
    // The incident file with stand-in commands: a worker is ready 300 ms after it starts,
    // like a CUDA context being created.
    let text = std::fs::read_to_string(example("compose.yml"))
        .unwrap()
        .replace(
            r#"["python3", "-m", "pipeline.worker", "--queue", "pdf"]"#,
            r#"["sh", "-c", "sleep 0.3; touch ready-$$STEWARD_SERVICE; exec sleep 1000"]"#,
        )
        .replace(
            r#"["CMD", "python3", "-m", "pipeline.health"]"#,
            r#"["CMD-SHELL", "test -f ready-$$STEWARD_SERVICE"]"#,
        )
        .replace("start_period: 30s", "start_interval: 20ms")
        .replace(
            r#"["redis-server", "--appendonly", "yes", "--dir", "/data"]"#,
            r#"["sh", "-c", "touch redis-up; exec sleep 1000"]"#,
        )
        .replace(r#"["CMD", "redis-cli", "ping"]"#, r#"["CMD", "test", "-f", "redis-up"]"#)
        .replace("interval: 5s", "interval: 100ms")
        .replace(
            "command: >\n      sh -c 'if [ -f /data/appendonlydir/appendonly.aof.manifest ]; then\n      echo y | redis-check-aof --fix /data/appendonlydir/appendonly.aof.manifest; fi'",
            "command: [\"true\"]",
        );
    assert!(
        !text.contains("pipeline.worker") && !text.contains("redis-check-aof --fix"),
        "stand-ins in place"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yml");
    std::fs::write(&file, text).unwrap();
    import_to(&file, dir.path(), &[]);
    let toml = std::fs::read_to_string(dir.path().join("steward.toml")).unwrap();
    let agent = Agent::prepare(&toml)
        .with_env("STEWARD_FAKE_GPUS", "2")
        .launch_args(&["--force"]);
    let gpu0: Vec<String> = (0..5).map(|i| format!("pipeline-gpu0#{i}")).collect();
    let gpu1: Vec<String> = (0..2).map(|i| format!("pipeline-gpu1#{i}")).collect();
    let all: Vec<&str> = gpu0.iter().chain(&gpu1).map(String::as_str).collect();
    agent.wait_for("all seven workers healthy", |a| {
        all.iter().all(|n| a.service(n)["health"] == "healthy")
    });
    // The one-shot check completed before Redis, and Redis was healthy before any worker.
    let aof_exit = Agent::ts(&agent.events_of("aof-check", "exited")[0]);
    let redis_start = Agent::ts(&agent.events_of("redis", "started")[0]);
    assert!(redis_start >= aof_exit);
    let redis_healthy = Agent::ts(
        &agent
            .events_of("redis", "health")
            .into_iter()
            .find(|e| e["state"] == "healthy")
            .unwrap(),
    );
    for gpu in [&gpu0, &gpu1] {
        let names: Vec<&str> = gpu.iter().map(String::as_str).collect();
        let w = windows(&agent, &names);
        assert!(
            w[0].2 >= redis_healthy,
            "{} started before redis was healthy",
            w[0].0
        );
        for pair in w.windows(2) {
            assert!(
                pair[1].2 >= pair[0].3,
                "{} started at {:?}, before {} was healthy at {:?}",
                pair[1].0,
                pair[1].2,
                pair[0].0,
                pair[0].3
            );
        }
    }
    // The two GPUs in parallel: GPU 1's first worker did not wait for GPU 0's five.
    let (w0, w1) = (
        windows(&agent, &["pipeline-gpu0#4"]),
        windows(&agent, &["pipeline-gpu1#0"]),
    );
    assert!(w1[0].2 < w0[0].2, "GPU 1 waited for GPU 0");
}

#[test]
fn the_example_steward_toml_is_what_import_writes_today() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yml");
    std::fs::copy(example("compose.yml"), &file).unwrap();
    import_to(&file, dir.path(), &[]);
    let now = std::fs::read_to_string(dir.path().join("steward.toml")).unwrap();
    let kept = std::fs::read_to_string(example("steward.toml")).unwrap();
    assert_eq!(
        kept, now,
        "examples/compose-import/steward.toml is stale: run `steward import compose.yml -o steward.toml --force` in that folder"
    );
}

#[test]
fn strict_json_force_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let web = compose("web.yml");
    let web = web.to_str().unwrap();
    // --strict: ports, volumes and networks cannot be taken over.
    let out = steward(&["import", web, "--strict"], dir.path());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--strict:"), "{}", stderr(&out));
    // --json needs --output for the TOML, then prints the decisions.
    let out = steward(&["import", web, "--json"], dir.path());
    assert!(
        !out.status.success() && stderr(&out).contains("--output"),
        "{}",
        stderr(&out)
    );
    let out = steward(&["import", web, "--json", "-o", "s.toml"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let decisions: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(decisions
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["service"] == "redis" && d["what"] == "todo"));
    // An existing output is not replaced without --force.
    let out = steward(&["import", web, "-o", "s.toml"], dir.path());
    assert!(
        !out.status.success() && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );
    assert!(
        steward(&["import", web, "-o", "s.toml", "--force"], dir.path())
            .status
            .success()
    );
    // The TOML goes to stdout without -o.
    let out = steward(&["import", web], dir.path());
    assert!(stdout(&out).contains("[services.api]"), "{}", stdout(&out));
    // Bad input: one line naming the file and the place.
    std::fs::write(
        dir.path().join("bad.yml"),
        "services:\n  a:\n    depends_on: [a]\n    command: [x]\n",
    )
    .unwrap();
    let out = steward(&["import", "bad.yml"], dir.path());
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("bad.yml:3:")
            && err.contains("services.a.depends_on")
            && err.contains("cycle"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // No file named and none here.
    let out = steward(&["import"], dir.path());
    assert!(
        stderr(&out).contains("no compose file given"),
        "{}",
        stderr(&out)
    );
}
