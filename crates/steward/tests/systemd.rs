//! `Type=notify` under systemd, with the test in systemd's place: it binds the datagram
//! socket, passes it as `NOTIFY_SOCKET` with a watchdog, and reads what the agent says.

mod common;
use common::*;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// Every datagram until `until` holds for one of them or `timeout` passes.
fn read_until(sock: &UnixDatagram, timeout: Duration, until: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).to_string();
            let done = until(&m);
            got.push(m);
            if done {
                break;
            }
        }
    }
    got
}

#[test]
fn ready_1_reaches_notify_socket_only_once_every_service_is_healthy_and_the_watchdog_is_fed() {
    let agent = Agent::prepare(
        r#"
[services.model]
# Healthy only once "loaded", a second after it starts.
command = ["sh", "-c", "env > model.env; sleep 1; touch loaded; exec sleep 1000"]
health = { exec = ["test", "-f", "loaded"], interval = "100ms", start_interval = "50ms" }

[services.api]
command = ["sleep", "1000"]
depends_on = { model = "healthy" }
"#,
    );
    let path = agent.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut agent = agent
        .with_env("NOTIFY_SOCKET", path.to_str().unwrap())
        .with_env("WATCHDOG_USEC", "300000")
        .launch(&[]);

    let before = read_until(&sock, LONG, |m| m.lines().any(|l| l == "READY=1"));
    let ready = before.last().cloned().unwrap_or_default();
    assert!(
        ready.lines().any(|l| l == "READY=1"),
        "no READY=1 in {before:?}\n{}",
        agent.agent_log()
    );
    // READY=1 came only after the health check passed and its dependent started.
    assert!(
        agent.path().join("loaded").exists(),
        "READY=1 before the model was healthy"
    );
    assert_eq!(agent.service("model")["health"], "healthy");
    assert_eq!(agent.service("api")["state"], "running");
    assert!(
        before
            .iter()
            .any(|m| m.starts_with("STATUS=waiting for") && m.contains("model (not ready yet)")),
        "it said what it waited for: {before:?}"
    );
    assert!(ready.contains("STATUS=2 service(s) up"), "{ready}");

    // At half of WatchdogSec (150 ms), so at least 3 within a second.
    let start = Instant::now();
    let pets = read_until(&sock, Duration::from_secs(5), |_| false)
        .into_iter()
        .filter(|m| m == "WATCHDOG=1")
        .count();
    assert!(
        pets >= 3 * start.elapsed().as_secs() as usize,
        "{pets} watchdog pets"
    );

    // Services do not inherit the agent's NOTIFY_SOCKET or watchdog.
    let env = std::fs::read_to_string(agent.path().join("model.env")).unwrap();
    assert!(
        !env.contains("NOTIFY_SOCKET") && !env.contains("WATCHDOG_"),
        "{env}"
    );

    // The same rule answers a readiness probe.
    assert!(agent.cli(&["ps", "--ready"]).status.success());
    assert!(agent.cli(&["stop", "api"]).status.success());
    let probe = agent.cli(&["ps", "--ready"]);
    assert!(!probe.status.success());
    assert!(
        stderr(&probe).contains("not ready: waiting for api (stopped)"),
        "{}",
        stderr(&probe)
    );

    assert!(agent.down().success());
    let after = read_until(&sock, Duration::from_secs(2), |m| m.contains("STOPPING=1"));
    assert!(after.iter().any(|m| m.contains("STOPPING=1")), "{after:?}");
}

#[test]
fn without_a_watchdog_only_status_and_ready_are_sent() {
    let agent = Agent::prepare("[services.a]\ncommand = [\"sleep\", \"1000\"]\n");
    // The abstract namespace, as systemd itself gives it.
    let name = format!("steward-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let agent = agent
        .with_env("NOTIFY_SOCKET", &format!("@{name}"))
        .launch(&[]);
    let got = read_until(&sock, LONG, |m| m.contains("READY=1"));
    assert!(
        got.iter().any(|m| m.contains("READY=1")),
        "{got:?}\n{}",
        agent.agent_log()
    );
    let more = read_until(&sock, Duration::from_secs(1), |_| false);
    assert!(!more.iter().any(|m| m.contains("WATCHDOG")), "{more:?}");
}
