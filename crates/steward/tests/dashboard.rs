//! The dashboard in a real browser: Debian's Chromium driven by selenium
//! (tests/browser/dashboard.py) against a real agent with a token. It logs in, sees the
//! services, a crash's finding arrive without a reload, the restart button change a pid,
//! a quarantined job's reason, hostile strings shown as text, and an action without the
//! session refused. With STEWARD_SCREENSHOTS=DIR it leaves its screenshots there (the
//! README's come from `STEWARD_SCREENSHOTS=docs/img`).

mod common;
use common::*;

#[test]
fn the_dashboard_works_in_chromium() {
    for tool in ["chromium", "chromedriver"] {
        assert!(
            which(tool).is_some(),
            "{tool} is missing: apt-get install chromium chromium-driver (scripts/test does)"
        );
    }
    let port = free_port();
    let token = "dashboard-test-token-91c2";
    let agent = Agent::prepare(&format!(
        r#"
[http]
listen = "127.0.0.1:{port}"
token = "env:STEWARD_TEST_DASH_TOKEN"

[services.web]
command = ["sh", "-c", "echo '<script>window.__pwned=1</script>'; echo '\"><img src=x onerror=window.__pwned=2>'; exec sleep 1000"]
memory = "256MiB"

[services.crashy]
# Runs until "crash" exists, then fails the way a CUDA OOM does.
command = ["sh", "-c", "while ! test -f crash; do sleep 0.1; done; echo 'RuntimeError: CUDA error: out of memory' >&2; exit 1"]
backoff = {{ initial = "200ms", max = "2s" }}

[pipelines.ocr]
command = ["sh", "-c", "echo 'Segmentation fault (core dumped)' >&2; kill -SEGV $$", "{{input}}"]
inputs = ["in"]
max_attempts = 2
backoff = {{ initial = "50ms", max = "100ms" }}
"#
    ));
    let inputs = agent.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::write(
        inputs.join("\"><img src=x onerror=window.__pwned=3>.pdf"),
        "x",
    )
    .unwrap();
    std::fs::write(inputs.join("report-2026.pdf"), "x").unwrap();
    let agent = agent.with_env("STEWARD_TEST_DASH_TOKEN", token).launch(&[]);
    agent.running("web");

    let shots = match std::env::var("STEWARD_SCREENSHOTS") {
        Ok(dir) => {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            dir
        }
        Err(_) => agent.path().to_path_buf(),
    };
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(token)
        .arg(agent.path().join("crash"))
        .arg(&shots)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "the browser test failed:\n{}\n{}\n(screenshot: {})",
        stdout(&out),
        stderr(&out),
        shots.join("failure.png").display()
    );
    assert!(!agent.agent_log().contains(token), "the token was logged");
}
