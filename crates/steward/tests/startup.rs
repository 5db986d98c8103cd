//! Start-up order: health checks, health-gated depends_on, replicas started one at a time
//! per GPU, rolling restarts and reverse-order shutdown. Real processes and real probes.

mod common;
use common::*;
use serde_json::Value;
use std::time::SystemTime;

#[test]
fn a_chain_waits_for_health_and_c_never_starts_while_b_is_unhealthy() {
    let agent = Agent::start(
        r#"
[services.a]
command = ["sleep", "1000"]

[services.b]
command = ["sleep", "1000"]
depends_on = { a = "started" }
health = { exec = ["test", "-f", "b-ok"], interval = "100ms", start_interval = "50ms", retries = 2 }

[services.c]
command = ["sleep", "1000"]
depends_on = { b = "healthy" }
"#,
    );
    agent.wait_for("b to be unhealthy", |a| {
        a.service("b")["health"] == "unhealthy"
    });
    let c = agent.service("c");
    assert_eq!(c["state"], "waiting", "{c}");
    assert_eq!(c["waiting_on"], "b to be healthy");
    assert!(
        agent.events_of("c", "started").is_empty(),
        "c started while b was unhealthy"
    );
    let table = stdout(&agent.cli(&["ps"]));
    assert!(table.contains("c: waiting for b to be healthy"), "{table}");

    std::fs::write(agent.path().join("b-ok"), "").unwrap();
    agent.running("c");
    let b_healthy = agent
        .events_of("b", "health")
        .into_iter()
        .find(|e| e["state"] == "healthy")
        .expect("b's healthy event");
    let c_started = &agent.events_of("c", "started")[0];
    assert!(
        Agent::ts(c_started) >= Agent::ts(&b_healthy),
        "c started before b was healthy"
    );
    let a_started = &agent.events_of("a", "started")[0];
    let b_started = &agent.events_of("b", "started")[0];
    assert!(Agent::ts(b_started) >= Agent::ts(a_started));
}

#[test]
fn completed_waits_for_a_one_shot_and_a_failed_one_blocks() {
    let agent = Agent::start(
        r#"
[services.migrate]
command = "sleep 0.3; echo done > migrated"
shell = true
restart = "never"

[services.app]
# Fails at once if it runs before the migration is done.
command = "test -f migrated && exec sleep 1000"
shell = true
restart = "never"
depends_on = { migrate = "completed" }

[services.broken-migrate]
command = ["sh", "-c", "exit 3"]
restart = "never"

[services.blocked-app]
command = ["sleep", "1000"]
depends_on = { broken-migrate = "completed" }
"#,
    );
    agent.running("app");
    assert_eq!(agent.service("migrate")["state"], "exited");
    agent.wait_for("blocked-app to show why it waits", |a| {
        a.service("blocked-app")["waiting_on"]
            .as_str()
            .is_some_and(|w| w.contains("blocked: broken-migrate failed (exited with code 3)"))
    });
    assert_eq!(agent.service("blocked-app")["state"], "waiting");
    let out = agent.cli(&["start", "blocked-app"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot start blocked-app: its dependency broken-migrate failed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_http_503_is_starting_then_200_is_healthy() {
    let port = free_port();
    let agent = Agent::start(&format!(
        r#"
[services.llm]
# Answers 503 (loading) for its first second, then 200, as llama.cpp does.
command = ["python3", "-c", """
import http.server, time, sys
t0 = time.time()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 503 if time.time() - t0 < 1.0 else 200
        print(code, flush=True)
        self.send_response(code); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", {port}), H).serve_forever()
"""]
health = {{ http = "http://127.0.0.1:{port}/health", interval = "200ms", start_interval = "100ms", retries = 1, start_period = "30s" }}
"#
    ));
    agent.wait_for("llm to be healthy", |a| {
        a.service("llm")["health"] == "healthy"
    });
    let states: Vec<Value> = agent
        .events_of("llm", "health")
        .iter()
        .map(|e| e["state"].clone())
        .collect();
    assert_eq!(states, vec!["healthy"], "503s never counted as failures");
    let log = std::fs::read_to_string(agent.state_dir().join("logs/llm/output.log")).unwrap();
    assert!(log.contains("503"), "the server answered 503 first: {log}");
    assert!(log.contains("200"), "{log}");
}

#[test]
fn tcp_and_exec_checks() {
    let port = free_port();
    let agent = Agent::start(&format!(
        r#"
[services.listener]
command = ["python3", "-c", "import socket,time\ntime.sleep(0.3)\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', {port})); s.listen()\nwhile True: s.accept()[0].close()"]
health = {{ tcp = "127.0.0.1:{port}", interval = "100ms", start_interval = "50ms" }}

[services.worker]
command = "sleep 0.2; touch worker-ready; exec sleep 1000"
shell = true
# An exec check runs in the service's folder with its environment.
health = {{ exec = ["sh", "-c", "test -f worker-ready && test \"$STEWARD_SERVICE\" = worker"], interval = "100ms", start_interval = "50ms" }}
"#
    ));
    agent.wait_for("both healthy", |a| {
        a.service("listener")["health"] == "healthy" && a.service("worker")["health"] == "healthy"
    });
}

#[test]
fn liveness_failures_restart_a_service_that_was_healthy() {
    let agent = Agent::start(
        r#"
[services.api]
command = "rm -f sick; sleep 1000"
shell = true
health = { exec = ["sh", "-c", "! test -f sick"], interval = "100ms", start_interval = "50ms", retries = 1 }
liveness_failures = 2
backoff = { initial = "100ms", max = "100ms" }
"#,
    );
    agent.wait_for("api healthy", |a| a.service("api")["health"] == "healthy");
    let first = agent.service("api")["pid"].as_u64().unwrap();
    std::fs::write(agent.path().join("sick"), "").unwrap();
    agent.wait_for("a liveness restart", |a| {
        a.events_of("api", "exited")
            .iter()
            .any(|e| e["class"] == "killed_unhealthy")
    });
    agent.wait_for("api healthy again", |a| {
        let s = a.service("api");
        s["health"] == "healthy" && s["pid"].as_u64() != Some(first)
    });
    let svc = agent.service("api");
    assert_eq!(svc["last_exit"]["class"], "killed_unhealthy");
    assert!(svc["restarts"].as_u64().unwrap() >= 1);
}

#[test]
fn replicas_on_one_gpu_start_one_at_a_time_and_gpus_in_parallel() {
    let agent = Agent::prepare(
        r#"
[services.worker]
# Ready 300 ms after start, like a CUDA context being created.
command = "sleep 0.3; touch ready-$STEWARD_SERVICE; echo gpu=$CUDA_VISIBLE_DEVICES order=$CUDA_DEVICE_ORDER; exec sleep 1000"
shell = true
gpus = "all"
replicas = 4
health = { exec = ["sh", "-c", "test -f ready-$STEWARD_SERVICE"], interval = "1s", start_interval = "20ms" }
"#,
    )
    .with_env("STEWARD_FAKE_GPUS", "2")
    .launch(&[]);
    let names = ["worker#0", "worker#1", "worker#2", "worker#3"];
    agent.wait_for("all four healthy", |a| {
        names.iter().all(|n| a.service(n)["health"] == "healthy")
    });
    let w = windows(&agent, &names);
    assert_eq!(
        w.iter().map(|x| x.1).collect::<Vec<_>>(),
        vec![0, 1, 0, 1],
        "round-robin over 2 GPUs"
    );
    for gpu in [0, 1] {
        let on: Vec<_> = w.iter().filter(|x| x.1 == gpu).collect();
        let (first, second) = (on[0], on[1]);
        assert!(
            second.2 >= first.3,
            "{} started at {:?}, before {} was healthy at {:?}",
            second.0,
            second.2,
            first.0,
            first.3
        );
    }
    // The two GPUs ran in parallel: each GPU's first window overlaps the other's.
    let (g0, g1) = (&w[0], &w[1]);
    assert!(
        g0.2 < g1.3 && g1.2 < g0.3,
        "GPU 0 and GPU 1 did not start in parallel: {w:?}"
    );

    let log = std::fs::read_to_string(agent.state_dir().join("logs/worker#1/output.log")).unwrap();
    assert!(
        log.contains("gpu=GPU-fake") && log.contains("order=PCI_BUS_ID"),
        "{log}"
    );
    let ps = agent.service("worker#1");
    assert_eq!(ps["gpu"], 1);
}

#[test]
fn restart_is_rolling_one_replica_at_a_time() {
    let agent = Agent::start(
        r#"
[services.web]
command = "rm -f ready-$STEWARD_SERVICE; sleep 0.2; touch ready-$STEWARD_SERVICE; exec sleep 1000"
shell = true
replicas = 3
health = { exec = ["sh", "-c", "test -f ready-$STEWARD_SERVICE"], interval = "1s", start_interval = "20ms" }
"#,
    );
    let names = ["web#0", "web#1", "web#2"];
    agent.wait_for("all healthy", |a| {
        names.iter().all(|n| a.service(n)["health"] == "healthy")
    });
    let out = agent.cli(&["restart", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Each replica's second start comes after the one before it was healthy again, and
    // after it went down: never two down at once.
    let second_start = |n: &str| Agent::ts(&agent.events_of(n, "started")[1]);
    let second_healthy = |n: &str| {
        Agent::ts(
            &agent
                .events_of(n, "health")
                .into_iter()
                .filter(|e| e["state"] == "healthy")
                .nth(1)
                .unwrap(),
        )
    };
    let stopping = |n: &str| Agent::ts(&agent.events_of(n, "stopping")[0]);
    for pair in names.windows(2) {
        assert!(
            stopping(pair[1]) >= second_healthy(pair[0]),
            "{} went down before {} was back",
            pair[1],
            pair[0]
        );
        assert!(second_start(pair[1]) >= second_healthy(pair[0]));
    }
    for n in names {
        assert_eq!(agent.service(n)["restarts"], 1);
    }
}

#[test]
fn down_stops_dependents_before_their_dependencies() {
    let mut agent = Agent::start(
        r#"
[services.db]
command = ["sleep", "1000"]

[services.api]
command = ["sleep", "1000"]
depends_on = ["db"]

[services.web]
command = ["sleep", "1000"]
depends_on = { api = "started" }
"#,
    );
    agent.running("web");
    assert!(agent.down().success());
    let stopped = |n: &str| Agent::ts(&agent.events_of(n, "stopped")[0]);
    let stopping = |n: &str| Agent::ts(&agent.events_of(n, "stopping")[0]);
    assert!(
        stopping("api") >= stopped("web"),
        "api was stopped before web was down"
    );
    assert!(
        stopping("db") >= stopped("api"),
        "db was stopped before api was down"
    );
}

#[test]
fn gpu_requests_are_checked_against_the_host() {
    let agent = Agent::prepare("[services.w]\ncommand = [\"sleep\", \"1\"]\ngpus = [5]\n");
    let out = std::process::Command::new(BIN)
        .args(["up", "-f", agent.config.to_str().unwrap()])
        .env("STEWARD_FAKE_GPUS", "2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("services.w.gpus: there is no GPU 5; this host has: 0 (GPU-fake"),
        "{err}"
    );
    assert!(err.contains("1 (GPU-fake"), "{err}");

    let out = std::process::Command::new(BIN)
        .args(["up", "-f", agent.config.to_str().unwrap()])
        .env("STEWARD_FAKE_GPUS", "0")
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("asks for GPUs, but there are none"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn ready_1_on_notify_socket_makes_it_healthy_for_dependents() {
    let agent = Agent::start(
        r#"
[services.model]
notify = true
# Says READY=1 once "loaded", as sd_notify does; '@' is the abstract namespace.
command = ["python3", "-c", """
import os, socket, time
time.sleep(0.3)
addr = os.environ['NOTIFY_SOCKET']
if addr.startswith('@'):
    addr = '\\0' + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b'STATUS=loaded\\nREADY=1', addr)
time.sleep(1000)
"""]

[services.api]
command = ["sleep", "1000"]
depends_on = { model = "healthy" }
"#,
    );
    agent.running("api");
    let model = agent.service("model");
    assert_eq!(model["ready"], true, "{model}");
    let ready = &agent.events_of("model", "health")[0];
    assert_eq!(ready["state"], "healthy");
    assert!(Agent::ts(&agent.events_of("api", "started")[0]) >= Agent::ts(ready));
}

#[test]
fn replicas_are_staggered_and_start_brings_up_stopped_dependencies() {
    let agent = Agent::start(
        r#"
[services.db]
command = ["sleep", "1000"]

[services.workers]
command = ["sleep", "1000"]
replicas = 3
start_stagger = "300ms"
depends_on = ["db"]
"#,
    );
    for n in ["workers#0", "workers#1", "workers#2"] {
        agent.running(n);
    }
    let starts: Vec<SystemTime> = (0..3)
        .map(|i| Agent::ts(&agent.events_of(&format!("workers#{i}"), "started")[0]))
        .collect();
    for pair in starts.windows(2) {
        let gap = pair[1].duration_since(pair[0]).unwrap();
        assert!(
            gap >= std::time::Duration::from_millis(290),
            "replicas {gap:?} apart, stagger is 300ms"
        );
    }

    for name in ["workers", "db"] {
        let out = agent.cli(&["stop", name]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(agent.service("db")["state"], "stopped");
    let out = agent.cli(&["start", "workers"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        agent.service("db")["state"],
        "running",
        "start brought its dependency up first"
    );
    let db_second = Agent::ts(&agent.events_of("db", "started")[1]);
    let w_second = Agent::ts(&agent.events_of("workers#0", "started")[1]);
    assert!(w_second >= db_second);
}
