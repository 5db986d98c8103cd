//! `steward config check`: every error names file:line:col, the key, and what was expected.

mod common;
use common::*;

/// `config check --no-host`: the file alone (the programs named need not exist here).
fn check(toml: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("steward.toml"), toml).unwrap();
    let out = steward(
        &["config", "check", "--no-host", "steward.toml"],
        dir.path(),
    );
    (out.status.success(), stdout(&out), stderr(&out))
}

/// `config check` with the host checks `up` makes.
fn check_on_host(toml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("steward.toml"), toml).unwrap();
    std::fs::write(dir.path().join("a-file"), "").unwrap();
    let out = steward(&["config", "check", "steward.toml"], dir.path());
    (out.status.success(), stderr(&out))
}

#[test]
fn unknown_key_names_line_column_and_suggests() {
    let (ok, _, err) = check("[services.web]\ncommand = [\"true\"]\nmemroy = \"1GiB\"\n");
    assert!(!ok);
    assert!(
        err.contains("steward.toml:3:1: services.web.memroy: unknown field `memroy`"),
        "{err}"
    );
    assert!(err.contains("did you mean `memory`?"), "{err}");
}

#[test]
fn a_bare_g_is_refused_with_gb_and_gib_explained() {
    let (ok, _, err) = check("[services.w]\ncommand = [\"true\"]\nmemory = \"12G\"\n");
    assert!(!ok);
    assert!(
        err.contains("steward.toml:3:10: services.w.memory:"),
        "{err}"
    );
    assert!(err.contains("\"12GiB\" = 12.00 GiB (12.88 GB)"), "{err}");
    assert!(err.contains("\"12GB\" = 11.18 GiB (12.00 GB)"), "{err}");
}

#[test]
fn durations_and_sizes_need_units() {
    let (ok, _, err) = check("[services.w]\ncommand = [\"true\"]\nstop_timeout = 10\n");
    assert!(!ok);
    assert!(
        err.contains("steward.toml:3:16: services.w.stop_timeout: 10 has no unit"),
        "{err}"
    );
    let (ok, _, err) = check("[services.w]\ncommand = [\"true\"]\nmemory = 1024\n");
    assert!(!ok);
    assert!(err.contains("services.w.memory: 1024 has no unit"), "{err}");
}

#[test]
fn relations_between_keys_point_at_the_key() {
    let (ok, _, err) =
        check("[services.w]\ncommand = [\"true\"]\nmemory = \"1GiB\"\nmemory_swap = \"512MiB\"\n");
    assert!(!ok);
    assert!(
        err.contains("steward.toml:4:1: services.w.memory_swap: memory_swap 512.00 MiB"),
        "{err}"
    );
    let (ok, _, err) = check("[services.w]\nrestart = \"always\"\n");
    assert!(!ok);
    assert!(
        err.contains("steward.toml:1:11: services.w.command: missing"),
        "{err}"
    );
    let (ok, _, err) = check("[services.w]\ncommand = [\"true\"]\nrestart = \"sometimes\"\n");
    assert!(!ok);
    assert!(err.contains("services.w.restart: unknown variant `sometimes`, expected one of `always`, `on-failure`, `never`"), "{err}");
    let (ok, _, err) = check("[services.w]\ncommand = \"python3 serve.py | tee log\"\n");
    assert!(!ok);
    assert!(err.contains("set shell = true"), "{err}");
}

#[test]
fn syntax_errors_and_missing_files_are_named() {
    let (ok, _, err) = check("[services.w\ncommand = 1\n");
    assert!(!ok);
    assert!(err.contains("steward.toml:1:"), "{err}");
    assert!(err.contains("TOML syntax"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let out = steward(&["config", "check", "no such file.toml"], dir.path());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot read config no such file.toml"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("hint:"), "{}", stderr(&out));
}

#[test]
fn odd_file_names_and_huge_values_are_fine() {
    let dir = tempfile::tempdir().unwrap();
    let name = "my \"odd\" config's.toml";
    let big = "x".repeat(1 << 20);
    std::fs::write(
        dir.path().join(name),
        format!("[services.w]\ncommand = [\"echo\", \"{big}\"]\nmemory = \"512MiB\"\n"),
    )
    .unwrap();
    let out = steward(&["config", "check", name, "--json"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let w = &json["services"]["w"];
    assert_eq!(w["memory"], 512u64 << 20);
    assert_eq!(w["memory_swap"], 512u64 << 20, "no swap unless asked");
    assert_eq!(w["restart"], "on-failure");
    assert_eq!(w["stop_signal"], "SIGTERM");
    assert_eq!(w["stop_timeout"], "10s");
    assert_eq!(w["oom_score_adj"], 500);
    assert_eq!(w["core_dumps"], false);
    assert_eq!(w["argv"][1].as_str().unwrap().len(), 1 << 20);
    assert!(json["state_dir"].as_str().unwrap().ends_with("/.steward"));
}

#[test]
fn every_example_config_is_valid() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let config = entry.unwrap().path().join("steward.toml");
        if config.exists() {
            // The examples name programs (vllm, …) this machine need not have, and the
            // gateway's keys come from the environment, as an operator would set them.
            let out = std::process::Command::new(BIN)
                .args(["config", "check", "--no-host", config.to_str().unwrap()])
                .current_dir(&examples)
                .env("STEWARD_GATEWAY_KEYS", "sk-example-1,sk-example-2")
                .env("STEWARD_HTTP_TOKEN", "example-token")
                .env(
                    "STEWARD_QUEUE_URL",
                    "postgresql://steward@db.internal/steward",
                )
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                config.display(),
                stderr(&out)
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "found only {checked} example configs");
}

#[test]
fn dependency_and_health_mistakes_are_named() {
    let (ok, _, err) = check("[services.a]\ncommand = [\"x\"]\ndepends_on = [\"b\"]\n[services.b]\ncommand = [\"x\"]\ndepends_on = [\"c\"]\n[services.c]\ncommand = [\"x\"]\ndepends_on = [\"a\"]\n");
    assert!(!ok);
    assert!(err.contains("dependency cycle: a -> b -> c -> a"), "{err}");
    let (_, _, err) = check("[services.a]\ncommand = [\"x\"]\ndepends_on = [\"a\"]\n");
    assert!(
        err.contains("steward.toml:3:1: services.a.depends_on: \"a\" depends on itself"),
        "{err}"
    );
    let (_, _, err) = check("[services.redis]\ncommand = [\"x\"]\n[services.a]\ncommand = [\"x\"]\ndepends_on = { rediss = \"healthy\" }\n");
    assert!(
        err.contains(
            "\"rediss\" is not a service in this file (it has: a, redis); did you mean \"redis\"?"
        ),
        "{err}"
    );
    let (_, _, err) = check("[services.redis]\ncommand = [\"x\"]\n[services.a]\ncommand = [\"x\"]\ndepends_on = { redis = \"healthy\" }\n");
    assert!(err.contains("redis has no health check"), "{err}");
    let (_, _, err) = check("[services.a]\ncommand = [\"x\"]\nhealth = { http = \"ftp://x/\" }\n");
    assert!(
        err.contains("services.a.health.http: \"ftp://x/\" is a ftp URL"),
        "{err}"
    );
    let (_, _, err) = check(
        "[services.a]\ncommand = [\"x\"]\nhealth = { tcp = \"127.0.0.1:1\", interval = \"0s\" }\n",
    );
    assert!(
        err.contains("services.a.health.interval: must be longer than 0s"),
        "{err}"
    );
    let (_, _, err) = check(
        "[services.a]\ncommand = [\"x\"]\nhealth = { tcp = \"127.0.0.1:1\", interval = \"-1s\" }\n",
    );
    assert!(
        err.contains("services.a.health.interval: \"-1s\" is not a duration"),
        "{err}"
    );
    let (_, _, err) = check("[services.a]\ncommand = [\"x\"]\nreplicas = 0\n");
    assert!(
        err.contains("services.a.replicas: must be at least 1"),
        "{err}"
    );
}

#[test]
fn the_resolved_env_shows_the_cuda_profile_under_the_users_env() {
    let (ok, out, err) = check("[services.w]\ncommand = [\"x\"]\ngpus = \"all\"\ncuda_env = \"strict\"\nenv = { CUDA_MODULE_LOADING = \"EAGER\" }\n");
    assert!(ok, "{err}");
    let _ = out;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.toml"), "[services.w]\ncommand = [\"x\"]\ngpus = \"all\"\ncuda_env = \"strict\"\nenv = { CUDA_MODULE_LOADING = \"EAGER\" }\n").unwrap();
    let out = steward(
        &["config", "check", "--no-host", "s.toml", "--json"],
        dir.path(),
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let env = &json["services"]["w"]["resolved_env"];
    assert_eq!(env["CUDA_DEVICE_ORDER"], "PCI_BUS_ID");
    assert_eq!(env["CUDA_DEVICE_MAX_CONNECTIONS"], "1");
    assert_eq!(env["PYTORCH_CUDA_ALLOC_CONF"], "expandable_segments:True");
    assert_eq!(env["CUDA_MODULE_LOADING"], "EAGER", "the user's value wins");
}

#[test]
fn config_check_refuses_what_up_would_refuse() {
    // A NUL byte can never be passed to a program.
    let (ok, _, err) = check("[services.w]\ncommand = [\"sleep\", \"1\\u0000\"]\n");
    assert!(!ok);
    assert!(
        err.contains("services.w.command: argument 1 holds a NUL byte"),
        "{err}"
    );
    let (ok, _, err) = check("[services.w]\ncommand = [\"true\"]\nenv = { A = \"x\\u0000y\" }\n");
    assert!(!ok && err.contains("NUL byte"), "{err}");
    // What only the host can tell: programs, working directories, the plan.
    let (ok, err) = check_on_host("[services.w]\ncommand = [\"pyhton3\", \"serve.py\"]\n");
    assert!(!ok);
    assert!(
        err.contains("program \"pyhton3\" not found in PATH"),
        "{err}"
    );
    let (ok, err) = check_on_host("[services.w]\ncommand = [\"true\"]\ncwd = \"no/such/dir\"\n");
    assert!(!ok && err.contains("cannot be used"), "{err}");
    let (ok, err) = check_on_host("[services.w]\ncommand = [\"true\"]\ncwd = \"a-file\"\n");
    assert!(!ok && err.contains("is not a directory"), "{err}");
    let (ok, err) = check_on_host("[services.w]\ncommand = [\"true\"]\nmemory = \"1048576TiB\"\n");
    assert!(!ok && err.contains("do not fit"), "{err}");
    let (ok, err) = check_on_host("[services.w]\ncommand = [\"true\"]\n");
    assert!(ok, "{err}");
    // And what the file alone can tell.
    let (ok, _, err) = check("[gateway]\nlisten = \"localhost\"\n");
    assert!(
        !ok && err.contains("gateway.listen") && err.contains("IP:PORT"),
        "{err}"
    );
    let (ok, _, err) = check("[gateway]\nlisten = \"127.0.0.1:99999\"\n");
    assert!(!ok && err.contains("IP:PORT"), "{err}");
}

#[test]
fn sizes_and_counts_past_what_a_node_has_are_refused_fast() {
    let started = std::time::Instant::now();
    for (toml, says) in [
        (
            "cpus = \"0-999999999\"",
            "beyond the highest CPU number steward takes (4095)",
        ),
        ("cpus = \"0-4294967295\"", "beyond the highest CPU number"),
        ("cpus = [99999]", "beyond the highest CPU number"),
        (
            "replicas = 100000000",
            "more than steward runs of one service (1024)",
        ),
        (
            "replicas = 1000000",
            "more than steward runs of one service",
        ),
        ("memory = \"8388608TiB\"", "larger than steward takes"),
        (
            "memory = \"18446744073709551615B\"",
            "larger than steward takes",
        ),
        ("stop_timeout = \"999999999999h\"", "longer than 100 years"),
        (
            "gpus = \"all\"\nreplicas_per_gpu = 100000",
            "more than steward places (64)",
        ),
    ] {
        let (ok, _, err) = check(&format!("[services.w]\ncommand = [\"true\"]\n{toml}\n"));
        assert!(!ok, "{toml} was accepted");
        assert!(err.contains(says), "{toml}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn api_keys_that_resolve_to_none_are_refused_naming_the_variable() {
    for (value, says) in [
        (None, "env:STEWARD_TEST_KEYS is not set"),
        (Some(""), "env:STEWARD_TEST_KEYS holds no key"),
        (Some(" , ,"), "env:STEWARD_TEST_KEYS holds no key"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("steward.toml"),
            "[gateway]\napi_keys = [\"env:STEWARD_TEST_KEYS\"]\n",
        )
        .unwrap();
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["config", "check", "steward.toml"])
            .current_dir(dir.path());
        match value {
            Some(v) => cmd.env("STEWARD_TEST_KEYS", v),
            None => cmd.env_remove("STEWARD_TEST_KEYS"),
        };
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{value:?} was accepted");
        assert!(stderr(&out).contains(says), "{value:?}: {}", stderr(&out));
        // `steward gateway` refuses the same way, without serving anything.
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["gateway", "-f", "steward.toml"])
            .current_dir(dir.path());
        match value {
            Some(v) => cmd.env("STEWARD_TEST_KEYS", v),
            None => cmd.env_remove("STEWARD_TEST_KEYS"),
        };
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{value:?}");
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
    let (ok, _, err) = check("[gateway]\napi_keys = [\"\"]\n");
    assert!(
        !ok && err.contains("an empty key would let any client in"),
        "{err}"
    );
}

#[test]
fn a_queue_url_up_could_not_use_is_refused_and_a_good_one_shown_masked() {
    let (ok, _, err) =
        check("[queue]\nurl = \"postgresql://u:hunter2@db/steward?sslmode=require\"\n");
    assert!(!ok);
    assert!(
        err.contains("sslmode=require, but this steward connects without TLS"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    let (ok, _, err) =
        check("[queue]\nurl = \"postgresql://u:hunter2@db/steward?connect_timeout=soon\"\n");
    assert!(!ok);
    assert!(
        err.contains("is not a PostgreSQL URL steward can read"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    let (ok, out, err) = check("[queue]\nurl = \"postgresql://u:hunter2@db/steward\"\n");
    assert!(ok, "{err}");
    assert!(out.contains("queue postgresql://u:***@db/steward"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
}
