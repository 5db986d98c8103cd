//! A real Prometheus server scrapes a real agent's `/metrics`; a query through its HTTP
//! API sees a service's restarts rise after it crashes.

mod common;
use common::*;
use std::process::{Child, Command, Stdio};

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of `query` in Prometheus on `port`, when it has one.
fn query(port: u16, query: &str) -> Option<f64> {
    let q: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let reply = try_http(port, "GET", &format!("/api/v1/query?query={q}"), &[], "").ok()?;
    let json: serde_json::Value = serde_json::from_str(&reply.body).ok()?;
    json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_scrapes_the_agent_and_sees_restarts_rise_after_a_crash() {
    let port = free_port();
    let agent = Agent::start(&format!(
        r#"
[http]
listen = "127.0.0.1:{port}"

[services.flaky]
command = ["sh", "-c", "test -f crash && exit 3; exec sleep 1000"]
backoff = {{ initial = "50ms", max = "100ms" }}
"#
    ));
    agent.running("flaky");
    let prom_port = free_port();
    let dir = agent.path().join("prometheus");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: steward\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"),
    )
    .unwrap();
    let server = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is missing: apt-get install prometheus (scripts/test does)");
    let _server = KillOnDrop(server);
    let restarts = "steward_service_restarts_total{service=\"flaky\"}";
    wait_until("Prometheus to scrape the agent", LONG, || {
        query(prom_port, restarts) == Some(0.0)
    });
    assert_eq!(query(prom_port, "up{job=\"steward\"}"), Some(1.0));

    std::fs::write(agent.path().join("crash"), "").unwrap();
    let pid = agent.service("flaky")["pid"].as_u64().unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    wait_until("Prometheus to see the restarts rise", LONG, || {
        query(prom_port, restarts).is_some_and(|v| v >= 1.0)
    });
}
