//! The agent's HTTP face (`[http]`): /health and /ready against a real agent, the token,
//! and what config check refuses.

mod common;
use common::*;

/// `GET path` with an optional bearer token: (status, body).
fn get_with(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
    let r = get(port, path, &headers);
    (r.status, r.body)
}

#[test]
fn health_is_503_naming_what_is_not_up_and_200_once_everything_is() {
    let port = free_port();
    let agent = Agent::start(&format!(
        r#"
[http]
listen = "127.0.0.1:{port}"

[services.web]
command = ["sleep", "1000"]

[services.model]
command = ["sleep", "1000"]
health = {{ exec = ["test", "-f", "loaded"], interval = "100ms", start_interval = "50ms", retries = 2 }}
"#
    ));
    agent.running("model");
    let (status, body) = get_with(port, "/health", None);
    assert_eq!(status, 503, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], "unavailable");
    let not_up = json["not_up"].as_array().unwrap();
    assert_eq!(not_up.len(), 1, "{json}");
    assert_eq!(not_up[0]["service"], "model");
    assert!(
        not_up[0]["why"].as_str().unwrap().starts_with("model ("),
        "{json}"
    );

    std::fs::write(agent.path().join("loaded"), "").unwrap();
    wait_until("/health to be 200", LONG, || {
        get_with(port, "/health", None).0 == 200
    });
    let (status, body) = get_with(port, "/ready", None);
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["up"], 2);
    assert_eq!(get_with(port, "/nope", None).0, 404);
}

#[test]
fn with_a_token_every_request_needs_it() {
    let port = free_port();
    let agent = Agent::prepare(&format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"env:STEWARD_TEST_HTTP_TOKEN\"\n\n[services.a]\ncommand = [\"sleep\", \"1000\"]\n"
    ))
    .with_env("STEWARD_TEST_HTTP_TOKEN", "s3cret-token")
    .launch(&[]);
    agent.running("a");
    let (status, body) = get_with(port, "/health", None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(get_with(port, "/health", Some("wrong")).0, 401);
    wait_until("/health with the token to be 200", LONG, || {
        get_with(port, "/health", Some("s3cret-token")).0 == 200
    });
    assert!(
        !agent.agent_log().contains("s3cret-token"),
        "the token was logged"
    );
}

#[test]
fn config_check_refuses_an_http_face_beyond_loopback_without_a_token_and_an_empty_one() {
    let dir = tempfile::tempdir().unwrap();
    let check = |toml: &str| {
        std::fs::write(dir.path().join("steward.toml"), toml).unwrap();
        let out = std::process::Command::new(BIN)
            .args(["config", "check", "--no-host", "--json", "steward.toml"])
            .current_dir(dir.path())
            .env_remove("STEWARD_TEST_UNSET_TOKEN")
            .env("STEWARD_TEST_EMPTY_TOKEN", " ")
            .output()
            .unwrap();
        (out.status.success(), stdout(&out), stderr(&out))
    };
    let (ok, _, err) = check("[http]\nlisten = \"0.0.0.0:9400\"\n");
    assert!(!ok);
    assert!(
        err.contains("http.listen: 0.0.0.0:9400 is beyond loopback, and there is no token"),
        "{err}"
    );
    let (ok, _, err) = check("[http]\ntoken = \"env:STEWARD_TEST_UNSET_TOKEN\"\n");
    assert!(!ok);
    assert!(
        err.contains("http.token: env:STEWARD_TEST_UNSET_TOKEN is not set"),
        "{err}"
    );
    let (ok, _, err) = check("[http]\ntoken = \"env:STEWARD_TEST_EMPTY_TOKEN\"\n");
    assert!(!ok);
    assert!(err.contains("the token is empty"), "{err}");
    let (ok, _, err) = check("[http]\nlisten = \"nowhere\"\n");
    assert!(!ok);
    assert!(err.contains("is not an address to listen on"), "{err}");
    // With a token it may listen anywhere, and the token is never printed.
    let (ok, out, err) =
        check("[http]\nlisten = \"0.0.0.0:9400\"\ntoken = \"tok-visible-nowhere\"\n");
    assert!(ok, "{err}");
    assert!(!out.contains("tok-visible-nowhere"), "{out}");
}

#[test]
fn metrics_show_each_services_state_and_restarts_and_a_crash_counts() {
    let port = free_port();
    let agent = Agent::prepare(&format!(
        r#"
[http]
listen = "127.0.0.1:{port}"

[services.web]
command = ["sleep", "1000"]
memory = "64MiB"

[services.flaky]
# Exits at once whenever "crash" exists; otherwise runs.
command = ["sh", "-c", "test -f crash && exit 3; exec sleep 1000"]
backoff = {{ initial = "50ms", max = "100ms" }}

[pipelines.ocr]
command = ["sh", "-c", "kill -SEGV $$", "{{input}}"]
inputs = ["in"]
max_attempts = 1
"#
    ));
    // One input, which segfaults: quarantined.
    write_inputs(&agent.path().join("in"), 1);
    let agent = agent.launch(&[]);
    agent.running("flaky");
    let (status, text) = get_with(port, "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        text.contains("steward_service_state{service=\"web\",replica=\"0\",state=\"running\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("steward_service_state{service=\"web\",replica=\"0\",state=\"failed\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("steward_service_restarts_total{service=\"flaky\",replica=\"0\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("steward_service_memory_limit_bytes{service=\"web\",replica=\"0\"} 67108864"),
        "{text}"
    );
    assert!(text.contains("steward_agent_info{version="), "{text}");
    assert!(
        !text.contains("# EOF"),
        "classic text without Accept: {text}"
    );
    std::fs::write(agent.path().join("crash"), "").unwrap();
    let pid = agent.service("flaky")["pid"].as_u64().unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    wait_until("a restart to show in /metrics", LONG, || {
        let (_, text) = get_with(port, "/metrics", None);
        text.lines().any(|l| {
            l.starts_with("steward_service_restarts_total{service=\"flaky\"")
                && l.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_some_and(|v| v >= 1)
        })
    });
    let (_, text) = get_with(port, "/metrics", None);
    assert!(
        text.contains(
            "steward_service_exits_total{service=\"flaky\",replica=\"0\",class=\"signaled\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("steward_service_cpu_seconds_total{service=\"web\""),
        "{text}"
    );
    assert!(
        text.contains("steward_agent_info{version=\"") && text.contains("cgroups=\""),
        "{text}"
    );

    // The job that segfaulted is quarantined: the queue's series say so.
    wait_until("the job to be quarantined in /metrics", LONG, || {
        get_with(port, "/metrics", None)
            .1
            .contains("steward_jobs{queue=\"ocr\",state=\"quarantined\"} 1")
    });
    let (_, text) = get_with(port, "/metrics", None);
    for series in [
        "steward_jobs_finished_total{queue=\"ocr\",outcome=\"quarantined\"} 1",
        "steward_job_attempts_total{queue=\"ocr\",class=\"signaled\"} 1",
        "steward_job_duration_seconds_count{queue=\"ocr\"} 1",
        "steward_job_duration_seconds_bucket{le=\"+Inf\",queue=\"ocr\"} 1",
    ] {
        assert!(text.contains(series), "{series} is missing: {text}");
    }
    // Every family, the histogram too, passes Prometheus' own linter.
    let promtool = which("promtool")
        .expect("promtool is missing: apt-get install prometheus (scripts/test does)");
    let file = agent.path().join("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    let out = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn an_xid_the_driver_logs_is_counted_for_its_gpu_and_put_on_the_timeline() {
    // The driver writes Xid lines to the kernel log; root may write one the same way. A
    // machine whose /dev/kmsg this test cannot write cannot show it.
    let Ok(mut kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") else {
        panic!("/dev/kmsg is not writable here: run the tests as root (scripts/test does in CI)");
    };
    let port = free_port();
    let agent = Agent::start(&format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n\n[services.a]\ncommand = [\"sleep\", \"1000\"]\n"
    ));
    agent.running("a");
    // A PCI id no GPU here has: counted under the PCI id, since no UUID matches it.
    let pci = format!("0000:{:02x}:1f", std::process::id() % 250);
    // One write is one record: the line goes whole.
    // It names the pid of service a: the event is a's.
    let pid = agent.service("a")["pid"].as_u64().unwrap();
    let line =
        format!("NVRM: Xid (PCI:{pci}): 79, pid={pid}, name=sleep, GPU has fallen off the bus.\n");
    std::io::Write::write_all(&mut kmsg, line.as_bytes()).unwrap();
    let series = format!("steward_gpu_xid_errors_total{{UUID=\"PCI:{pci}\",xid=\"79\"}} 1");
    wait_until("the Xid to be counted", LONG, || {
        get_with(port, "/metrics", None).1.contains(&series)
    });
    let (_, events) = get_with(port, "/api/v1/events/recent", None);
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    let xid = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "gpu_xid")
        .unwrap_or_else(|| panic!("no gpu_xid event: {events}"))
        .clone();
    assert_eq!(xid["xid"], 79);
    assert_eq!(xid["service"], "a", "{xid}");
    assert!(
        xid["explain"].as_str().unwrap().starts_with("xid-79: "),
        "{xid}"
    );
}
