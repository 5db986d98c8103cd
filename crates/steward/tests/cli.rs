//! The command line as people type it: `-f FILE` and `--state-dir DIR` before the command,
//! after it, or after a subcommand's own arguments.

mod common;
use common::*;

#[test]
fn file_and_state_dir_are_accepted_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("x.toml");
    std::fs::write(
        &cfg,
        "state_dir = \"st\"\n[pipelines.p]\ncommand = [\"true\"]\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/a.txt"), "a").unwrap();
    let f = cfg.to_str().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    for args in [
        vec!["-f", f, "config", "check"],
        vec!["config", "-f", f, "check"],
        vec!["config", "check", "-f", f],
        vec!["config", "check", f],
    ] {
        let out = steward(&args, elsewhere.path());
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).contains("x.toml: ok"), "{args:?}");
    }
    let st_dir = dir.path().join("st");
    let st = st_dir.to_str().unwrap();
    let input = dir.path().join("in");
    let out = steward(
        &["queue", "add", "p", input.to_str().unwrap(), "-f", f],
        elsewhere.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        dir.path().join("st/queue.db").exists(),
        "the config's state dir"
    );
    for args in [
        vec!["-f", f, "queue", "stats", "--json"],
        vec!["queue", "-f", f, "stats", "--json"],
        vec!["queue", "stats", "--json", "-f", f],
        vec!["--state-dir", st, "queue", "stats", "--json"],
        vec!["queue", "stats", "--json", "--state-dir", st],
    ] {
        let out = steward(&args, elsewhere.path());
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(stats["counts"]["pending"], 1, "{args:?}");
    }
    // `logs -f` is follow; the file goes before the command, or as --file.
    let out = steward(&["-f", f, "logs", "nosuch"], elsewhere.path());
    assert!(
        stderr(&out).contains("no logs for \"nosuch\""),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("/st"), "{}", stderr(&out));
}

#[test]
fn bad_fake_gpus_and_a_zero_top_are_refused_naming_what_they_take() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("steward.toml"),
        "[services.a]\ncommand = [\"sleep\", \"1\"]\ngpus = \"all\"\n",
    )
    .unwrap();
    for bad in ["abc", "99999999", "-1"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_steward"))
            .args(["config", "check"])
            .current_dir(dir.path())
            .env("STEWARD_FAKE_GPUS", bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            stderr(&out).contains("is not a number of fake GPUs from 0 to 64"),
            "{bad}: {}",
            stderr(&out)
        );
    }
    std::fs::write(dir.path().join("log"), "CUDA out of memory\n").unwrap();
    let out = steward(&["explain", "--top", "0", "log"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("0 is not in 1.."), "{}", stderr(&out));
}

#[test]
fn queue_reads_on_a_mistyped_state_dir_say_there_is_no_queue_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("srv/typo");
    let t = typo.to_str().unwrap();
    for cmd in ["stats", "ls", "export"] {
        let out = steward(&["queue", "--state-dir", t, cmd], dir.path());
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        assert!(
            stderr(&out).contains("there is no queue at")
                && stderr(&out).contains("check --state-dir"),
            "{cmd}: {}",
            stderr(&out)
        );
    }
    assert!(!typo.exists(), "a read made the state dir");
}

#[test]
fn talking_to_the_agent_needs_none_of_the_secrets_up_reads() {
    let port = free_port();
    let mut agent = Agent::prepare(&format!(
        "[gateway]\nlisten = \"127.0.0.1:{port}\"\napi_keys = [\"env:STEWARD_TEST_KEYS\"]\n\n[services.a]\ncommand = [\"sleep\", \"1000\"]\n"
    ))
    .with_env("STEWARD_TEST_KEYS", "sk-test")
    .launch(&[]);
    // The CLI runs without STEWARD_TEST_KEYS: it only needs to find the agent.
    agent.running("a");
    for args in [vec!["ps"], vec!["stop", "a"], vec!["start", "a"]] {
        let out = agent.cli(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    assert!(agent.down().success());
    // What needs the secret still says so.
    let check = agent.cli(&["config", "check", "--no-host"]);
    assert!(!check.status.success());
    assert!(
        stderr(&check).contains("STEWARD_TEST_KEYS"),
        "{}",
        stderr(&check)
    );
}
