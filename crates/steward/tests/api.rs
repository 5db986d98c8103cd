//! The agent's JSON API under /api/v1/ against a real agent: reads, actions, the token and
//! the login cookie, CSRF and DNS-rebinding refusals, read_only, bad input, the event
//! stream, and the gateway's view and series.

mod common;
use common::*;
use std::io::{Read, Write};

const TOKEN: &str = "api-test-token-7f3a";

fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

/// A service, and a pipeline whose one job (a hostile file name) segfaults: quarantined.
fn agent_with_token() -> (Agent, u16) {
    let port = free_port();
    let agent = Agent::prepare(&format!(
        r#"
[http]
listen = "127.0.0.1:{port}"
token = "env:STEWARD_TEST_API_TOKEN"

[services.web]
command = ["sh", "-c", "echo '<b>bold</b> from web'; exec sleep 1000"]

[pipelines.ocr]
command = ["sh", "-c", "echo 'Segmentation fault (core dumped)' >&2; kill -SEGV $$", "{{input}}"]
inputs = ["in"]
max_attempts = 1
"#
    ));
    std::fs::create_dir_all(agent.path().join("in")).unwrap();
    std::fs::write(
        agent
            .path()
            .join("in")
            .join("\"><img src=x onerror=alert(1)>.pdf"),
        "x",
    )
    .unwrap();
    let agent = agent.with_env("STEWARD_TEST_API_TOKEN", TOKEN).launch(&[]);
    agent.running("web");
    (agent, port)
}

#[test]
fn reads_need_the_token_and_answer_with_the_clis_types() {
    let (agent, port) = agent_with_token();
    let b = bearer();
    assert_eq!(get(port, "/api/v1/services", &[]).status, 401);
    let wrong = get(port, "/api/v1/services", &["Authorization: Bearer nope"]);
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.header("www-authenticate"), Some("Bearer"));
    // A browser without a session gets the login form.
    let form = get(port, "/", &["Accept: text/html"]);
    assert_eq!(form.status, 401);
    assert!(form.body.contains("action=\"/login\""), "{}", form.body);

    let services = get(port, "/api/v1/services", &[&b]).json();
    let web = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "web")
        .unwrap()
        .clone();
    // The same fields as `steward ps --json`.
    let ps = agent.service("web");
    for key in [
        "name",
        "state",
        "pid",
        "restarts",
        "memory_limit",
        "enforcement",
    ] {
        assert_eq!(web[key], ps[key], "{key}");
    }
    let logs = get(port, "/api/v1/services/web/logs?tail=5", &[&b]).json();
    assert!(
        logs["text"]
            .as_str()
            .unwrap()
            .contains("<b>bold</b> from web"),
        "{logs}"
    );

    wait_until("the job to be quarantined", LONG, || {
        get(port, "/api/v1/jobs?state=quarantined", &[&b]).json()["jobs"]
            .as_array()
            .is_some_and(|j| j.len() == 1)
    });
    let jobs = get(port, "/api/v1/jobs?state=quarantined&q=onerror", &[&b]).json();
    let job = &jobs["jobs"][0];
    assert!(
        job["payload"]["input"]
            .as_str()
            .unwrap()
            .ends_with("\"><img src=x onerror=alert(1)>.pdf"),
        "{job}"
    );
    let detail = get(port, &format!("/api/v1/jobs/{}", job["id"]), &[&b]).json();
    let attempt = &detail["attempts"][0];
    assert_eq!(attempt["class"]["class"], "signaled");
    assert!(
        attempt["explain"]
            .as_str()
            .unwrap()
            .starts_with("segfault:"),
        "{detail}"
    );
    let queues = get(port, "/api/v1/queues", &[&b]).json();
    assert_eq!(queues["queues"][0]["queue"], "ocr");
    assert_eq!(queues["queues"][0]["counts"]["quarantined"], 1);
    let fleet = get(port, "/api/v1/nodes", &[&b]).json();
    assert_eq!(fleet["nodes"].as_array().unwrap().len(), 1, "{fleet}");
    let node = get(port, "/api/v1/node", &[&b]).json();
    assert!(
        node["doctor"].as_array().is_some_and(|c| !c.is_empty()),
        "{node}"
    );
    assert!(node["host"]["memory"].is_object(), "{node}");

    // Bad input and unknown things: a clear error each.
    for (path, status, says) in [
        (
            "/api/v1/services/nope/logs",
            404,
            "no service instance named \"nope\"",
        ),
        (
            "/api/v1/services/web/logs?tail=lots",
            400,
            "is not a number",
        ),
        ("/api/v1/jobs?state=bogus", 400, "is not a job state"),
        ("/api/v1/jobs/abc", 400, "is not a job id"),
        ("/api/v1/jobs/99999", 404, "there is no job 99999"),
        ("/api/v1/gateway", 404, "no [gateway]"),
        ("/api/v1/nothing", 404, "no such page or endpoint"),
    ] {
        let r = get(port, path, &[&b]);
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert!(
            r.json()["error"].as_str().unwrap().contains(says),
            "{path}: {}",
            r.body
        );
    }
    assert_eq!(
        http(port, "DELETE", "/api/v1/services", &[&b], "").status,
        405
    );
    assert!(!agent.agent_log().contains(TOKEN), "the token was logged");
}

#[test]
fn actions_are_post_from_this_origin_and_the_login_cookie_works_for_a_browser() {
    let (agent, port) = agent_with_token();
    let b = bearer();
    let pid = agent.service("web")["pid"].as_u64().unwrap();
    assert_eq!(post(port, "/api/v1/services/web/restart", &[]).status, 401);
    // Another site's page cannot act, even with a valid credential riding along.
    let csrf = post(
        port,
        "/api/v1/services/web/restart",
        &[&b, "Origin: https://evil.example"],
    );
    assert_eq!(csrf.status, 403, "{}", csrf.body);
    assert_eq!(agent.service("web")["pid"].as_u64(), Some(pid));
    let ok = post(port, "/api/v1/services/web/restart", &[&b]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    wait_until("web to run with a new pid", LONG, || {
        let s = agent.service("web");
        s["state"] == "running" && s["pid"].as_u64().is_some_and(|p| p != pid)
    });
    let r = post(port, "/api/v1/services/nope/restart", &[&b]);
    assert_eq!(r.status, 404, "{}", r.body);
    let r = post(port, "/api/v1/services/web/explode", &[&b]);
    assert_eq!(r.status, 404, "{}", r.body);

    // The login form: a wrong token is refused, the right one opens a session.
    let wrong = http(
        port,
        "POST",
        "/login",
        &["Content-Type: application/x-www-form-urlencoded"],
        "token=nope",
    );
    assert_eq!(wrong.status, 401);
    let login = http(
        port,
        "POST",
        "/login",
        &["Content-Type: application/x-www-form-urlencoded"],
        &format!("token={TOKEN}"),
    );
    assert_eq!(login.status, 303, "{}", login.body);
    let cookie = login.header("set-cookie").unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(TOKEN),
        "the cookie carries the token: {cookie}"
    );
    let session = format!("Cookie: {}", cookie.split(';').next().unwrap());
    assert_eq!(get(port, "/api/v1/services", &[&session]).status, 200);
    let page = get(port, "/", &[&session]);
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("script-src 'self'"));
    // A session's action needs this agent's Origin.
    let no_origin = post(port, "/api/v1/services/web/stop", &[&session]);
    assert_eq!(no_origin.status, 403, "{}", no_origin.body);
    let origin = format!("Origin: http://127.0.0.1:{port}");
    assert_eq!(
        post(port, "/api/v1/services/web/stop", &[&session, &origin]).status,
        200
    );
    wait_until("web to be stopped", LONG, || {
        agent.service("web")["state"] == "stopped"
    });
    let forged = get(
        port,
        "/api/v1/services",
        &["Cookie: steward_session=0123456789abcdef"],
    );
    assert_eq!(forged.status, 401);

    // Jobs: one, or every job a filter matches; never every job by accident.
    wait_until("the job to be quarantined", LONG, || {
        get(port, "/api/v1/jobs?state=quarantined", &[&b]).json()["jobs"]
            .as_array()
            .is_some_and(|j| j.len() == 1)
    });
    let id = get(port, "/api/v1/jobs?state=quarantined", &[&b]).json()["jobs"][0]["id"]
        .as_i64()
        .unwrap();
    let r = post(port, &format!("/api/v1/jobs/{id}/cancel"), &[&b]);
    assert_eq!(
        r.status, 409,
        "a quarantined job cannot be cancelled: {}",
        r.body
    );
    let r = post(port, "/api/v1/jobs/retry", &[&b]);
    assert_eq!(r.status, 400, "{}", r.body);
    let r = post(
        port,
        "/api/v1/jobs/retry?state=quarantined&queue=ocr",
        &[&b],
    );
    assert_eq!(r.json()["changed"], 1, "{}", r.body);
    wait_until("the retried job to be quarantined again", LONG, || {
        let detail = get(port, &format!("/api/v1/jobs/{id}"), &[&b]).json();
        detail["job"]["state"] == "quarantined"
    });
    assert_eq!(
        post(port, &format!("/api/v1/jobs/{id}/retry"), &[&b]).json()["changed"],
        1
    );
    assert_eq!(post(port, "/api/v1/jobs/12345/retry", &[&b]).status, 404);
    assert_eq!(post(port, "/api/v1/jobs/x/retry", &[&b]).status, 400);
}

#[test]
fn read_only_refuses_actions_and_a_foreign_host_name_is_refused_without_a_token() {
    let port = free_port();
    let agent = Agent::start(&format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\nread_only = true\n\n[services.web]\ncommand = [\"sleep\", \"1000\"]\n"
    ));
    agent.running("web");
    assert_eq!(get(port, "/api/v1/services", &[]).status, 200);
    let r = post(port, "/api/v1/services/web/restart", &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("read_only"));
    // A page on another site that rebinds its name to 127.0.0.1 is not this agent.
    let r = get(port, "/api/v1/services", &["Host: rebind.evil.example:80"]);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        get(port, "/api/v1/services", &["Host: localhost"]).status,
        200
    );
}

#[test]
fn the_event_stream_replays_then_follows_and_the_gateways_routes_and_series_are_served() {
    let (port, gw) = (free_port(), free_port());
    let agent = Agent::start(&format!(
        r#"
[http]
listen = "127.0.0.1:{port}"

[gateway]
listen = "127.0.0.1:{gw}"

[[gateway.routes]]
model = "chat"
backends = [{{ url = "http://127.0.0.1:9", health = false }}]

[services.web]
command = ["sleep", "1000"]
"#
    ));
    agent.running("web");
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        c,
        "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let mut read_until = |c: &mut std::net::TcpStream, what: &str, seen: &mut String| {
        let deadline = std::time::Instant::now() + LONG;
        while !seen.contains(what) {
            assert!(std::time::Instant::now() < deadline, "no {what} in: {seen}");
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "the stream ended: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    read_until(&mut c, "\"event\":\"agent_started\"", &mut seen);
    assert!(seen.contains("content-type: text/event-stream"), "{seen}");
    read_until(&mut c, ": replayed", &mut seen);
    // Live: a stop shows up as it happens, with its summary.
    assert!(agent.cli(&["stop", "web"]).status.success());
    read_until(&mut c, "\"summary\":\"web: stopped\"", &mut seen);
    read_until(&mut c, "event: changed", &mut seen);

    let routes = get(port, "/api/v1/gateway", &[]).json();
    assert_eq!(routes["routes"][0]["model"], "chat", "{routes}");
    assert_eq!(
        routes["routes"][0]["backends"][0]["url"],
        "http://127.0.0.1:9"
    );
    let metrics = get(port, "/metrics", &[]);
    assert!(
        metrics.body.contains("steward_service_state{"),
        "{}",
        metrics.body
    );
    assert!(
        metrics.body.contains("steward_gateway_"),
        "the gateway's series are missing: {}",
        metrics.body
    );
}
