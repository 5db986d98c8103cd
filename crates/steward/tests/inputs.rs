//! Inputs end to end: names that are not names (quotes, newlines, bytes that are not
//! UTF-8), inputs that escape their root, equal bytes under two names, and an input this
//! node cannot read.

mod common;
use common::*;

#[test]
fn inputs_that_escape_the_input_root_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_inputs(&dir.path().join("in"), 2);
    std::fs::write(dir.path().join("secret.txt"), "not yours\n").unwrap();
    std::os::unix::fs::symlink(
        dir.path().join("secret.txt"),
        dir.path().join("in/link.txt"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("steward.toml"),
        r#"
[pipelines.conv]
command = ["cp", "{input}", "{output_dir}/{name}"]
output_dir = "out"
confine_inputs = true
input_root = "in"
"#,
    )
    .unwrap();
    let q = |args: &[&str]| queue_cli(dir.path(), args);
    assert!(q(&["add", "conv", "in"]).status.success());
    assert!(q(&["add", "conv", "in/../secret.txt", "--key", "path"])
        .status
        .success());
    let out = run_until_empty(dir.path());
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("conv: 2 succeeded, 2 quarantined"), "{text}");
    assert!(text.contains("outside the input root"), "{text}");
    assert!(
        !dir.path().join("out/secret.txt").exists() && !dir.path().join("out/link.txt").exists()
    );
}

#[test]
fn file_names_with_spaces_quotes_substitutions_and_newlines_are_just_names() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    let names = [
        "with space.txt",
        "it's \"quoted\".txt",
        "$(touch PWNED) `touch PWNED2`.txt",
        "new\nline.txt",
        "-dash-first.txt",
    ];
    for (i, n) in names.iter().enumerate() {
        std::fs::write(inputs.join(n), format!("content {i}\n")).unwrap();
    }
    std::fs::write(
        dir.path().join("steward.toml"),
        r#"
[pipelines.names]
# No shell: each argv element is filled in on its own.
command = ["cp", "--", "{input}", "{output_dir}/{name}"]
inputs = ["in"]
output_dir = "out"
expect_output = "{output_dir}/{name}"
"#,
    )
    .unwrap();
    let out = run_until_empty(dir.path());
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("names: 5 succeeded, 0 quarantined"), "{text}");
    for (i, n) in names.iter().enumerate() {
        let copied = std::fs::read_to_string(dir.path().join("out").join(n))
            .unwrap_or_else(|e| panic!("{n:?}: {e}"));
        assert_eq!(copied, format!("content {i}\n"));
    }
    for pwned in ["PWNED", "PWNED2", "in/PWNED", "out/PWNED"] {
        assert!(
            !dir.path().join(pwned).exists(),
            "a file name was run as a command"
        );
    }
}

#[test]
fn two_files_with_the_same_bytes_are_two_jobs_and_each_gets_its_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in/sub")).unwrap();
    for name in ["a.txt", "b.txt", "sub/a.txt"] {
        std::fs::write(dir.path().join("in").join(name), "the same bytes\n").unwrap();
    }
    std::fs::write(
        dir.path().join("steward.toml"),
        "[pipelines.p]\ncommand = [\"cp\", \"{input}\", \"{output_dir}/{name}\"]\ninputs = [\"in\"]\nexpect_output = \"{output_dir}/{name}\"\n",
    )
    .unwrap();
    let out = steward(&["run", "-f", "steward.toml", "--until-empty"], dir.path());
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    // a.txt twice (same bytes, same name) is one job; b.txt is its own.
    assert!(stdout(&out).contains("p: 2 succeeded"), "{}", stdout(&out));
    for name in ["a.txt", "b.txt"] {
        assert!(
            dir.path().join("p-out").join(name).exists(),
            "{name} has its output"
        );
    }
}

#[test]
fn a_file_name_that_is_not_utf8_reaches_the_worker_byte_for_byte() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"\xff\xfe-x.txt");
    std::fs::write(dir.path().join("in").join(odd), "bytes\n").unwrap();
    std::fs::write(dir.path().join("in/fine.txt"), "fine\n").unwrap();
    std::fs::write(
        dir.path().join("steward.toml"),
        "[pipelines.p]\ncommand = [\"cp\", \"{input}\", \"{output_dir}/{name}\"]\ninputs = [\"in\"]\nexpect_output = \"{output_dir}/{name}\"\n",
    )
    .unwrap();
    let out = steward(&["run", "-f", "steward.toml", "--until-empty"], dir.path());
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("p: 2 succeeded"), "{}", stdout(&out));
    assert!(
        dir.path().join("p-out").join(odd).exists(),
        "the output has the very name"
    );
    // People see it escaped.
    let ls = queue_cli(dir.path(), &["ls"]);
    assert!(stdout(&ls).contains("\\xff\\xfe-x.txt"), "{}", stdout(&ls));
}

#[test]
fn an_input_this_node_cannot_read_fails_its_attempts_naming_the_node() {
    let dir = tempfile::tempdir().unwrap();
    write_inputs(&dir.path().join("in"), 2);
    std::fs::write(
        dir.path().join("steward.toml"),
        r#"
[node]
name = "gpu-3"

[pipelines.conv]
command = ["cp", "{input}", "{output_dir}/{name}"]
output_dir = "out"
max_attempts = 2
backoff = { initial = "10ms", max = "20ms" }
"#,
    )
    .unwrap();
    assert!(queue_cli(dir.path(), &["add", "conv", "in"])
        .status
        .success());
    // As if the shared storage were not mounted on this node.
    std::fs::remove_file(dir.path().join("in/doc-00001.txt")).unwrap();
    let out = run_until_empty(dir.path());
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("conv: 1 succeeded, 1 quarantined"), "{text}");
    let show = queue_cli(dir.path(), &["ls", "--state", "quarantined", "--json"]);
    let listed = stdout(&show);
    assert!(listed.contains("doc-00001.txt"), "{listed}");
    let events = std::fs::read_to_string(dir.path().join(".steward/events.jsonl")).unwrap();
    let failed: Vec<serde_json::Value> = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "job_failed")
        .collect();
    assert_eq!(failed.len(), 2, "each attempt is counted, none skipped");
    for f in &failed {
        let error = f["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("input unreadable on gpu-3: "), "{f}");
    }
}
