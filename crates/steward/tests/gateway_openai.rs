//! The gateway as users run it, with a mock OpenAI backend (python3's http.server) behind
//! it: the official `openai` Python client (PyPI) against `steward gateway`, non-streaming
//! and streaming; and `steward up` with a service backend whose health comes from the
//! supervisor.

mod common;
use common::*;
use std::process::{Command, Stdio};

const MOCK: &str = r#"
import http.server, json, sys, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if req.get("model") == "dying":
            # One event of a stream, then the connection is cut: a backend that died.
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            data = b"data: {}\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data)); self.wfile.flush()
            import socket; self.connection.shutdown(socket.SHUT_RDWR)
            return
        if req.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for word in ["hello", " from", " " + req["model"]]:
                chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": req["model"],
                         "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
                data = ("data: " + json.dumps(chunk) + "\n\n").encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data)); self.wfile.flush(); time.sleep(0.05)
            data = b"data: [DONE]\n\n"
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)); self.wfile.flush()
            return
        body = json.dumps({"id": "c1", "object": "chat.completion", "created": 1, "model": req["model"],
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi from " + req["model"]},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

const CLIENT: &str = r#"
import sys, openai
c = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="sk-test", timeout=10, max_retries=0)
r = c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
print("plain:", r.choices[0].message.content)
parts = [ch.choices[0].delta.content or "" for ch in c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], stream=True)]
print("stream:", "".join(parts), len(parts))
try:
    openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="sk-wrong", max_retries=0).models.list()
except openai.AuthenticationError as e:
    print("auth:", e.status_code)
"#;

struct Kill(Vec<std::process::Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn the_official_openai_client_works_through_the_gateway() {
    if Command::new("python3")
        .args(["-c", "import openai"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        panic!("this test needs the `openai` Python package (scripts/test installs it: pip install openai)");
    }
    let dir = tempfile::tempdir().unwrap();
    let (backend_port, gw_port) = (free_port(), free_port());
    let mut procs = Kill(Vec::new());
    procs.0.push(
        Command::new("python3")
            .args(["-c", MOCK, &backend_port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::fs::write(
        dir.path().join("steward.toml"),
        format!(
            "[gateway]\nlisten = \"127.0.0.1:{gw_port}\"\napi_keys = [\"sk-test\"]\n[[gateway.routes]]\nmodel = \"chat\"\nbackends = [{{ url = \"http://127.0.0.1:{backend_port}\", model = \"mock-7b\" }}]\n"
        ),
    )
    .unwrap();
    procs.0.push(
        Command::new(BIN)
            .args(["gateway", "-f", "steward.toml"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the gateway and the backend to listen", LONG, || {
        std::net::TcpStream::connect(("127.0.0.1", gw_port)).is_ok()
            && std::net::TcpStream::connect(("127.0.0.1", backend_port)).is_ok()
    });
    let out = Command::new("python3")
        .args(["-c", CLIENT, &format!("http://127.0.0.1:{gw_port}")])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("plain: hi from mock-7b"), "{text}");
    assert!(text.contains("stream: hello from mock-7b 3"), "{text}");
    assert!(text.contains("auth: 401"), "{text}");
}

/// One HTTP/1.1 request over a fresh connection; the status and the body.
fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(LONG)).unwrap();
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        out.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    )
}

fn chat(port: u16) -> (u16, String) {
    http(
        port,
        "POST",
        "/v1/chat/completions",
        r#"{"model": "chat", "messages": [{"role": "user", "content": "hi"}]}"#,
    )
}

#[test]
fn a_service_backend_takes_its_health_from_the_supervisor() {
    let (service_port, fallback_port, gw_port) = (free_port(), free_port(), free_port());
    let mut procs = Kill(Vec::new());
    procs.0.push(
        Command::new("python3")
            .args(["-c", MOCK, &fallback_port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let agent = Agent::prepare(&format!(
        r#"
[services.chat-server]
command = ["python3", "mock.py", "{service_port}"]
health = {{ http = "http://127.0.0.1:{service_port}/health", interval = "200ms", start_interval = "50ms" }}

[gateway]
listen = "127.0.0.1:{gw_port}"
[[gateway.routes]]
model = "chat"
backends = [
  {{ service = "chat-server", model = "primary-7b" }},
  {{ url = "http://127.0.0.1:{fallback_port}", priority = 2, model = "fallback-7b" }},
]
"#
    ));
    std::fs::write(agent.path().join("mock.py"), MOCK).unwrap();
    let mut agent = agent.launch(&[]);
    wait_until("the service to answer through the gateway", LONG, || {
        std::net::TcpStream::connect(("127.0.0.1", gw_port)).is_ok()
            && std::net::TcpStream::connect(("127.0.0.1", fallback_port)).is_ok()
            && chat(gw_port).1.contains("hi from primary-7b")
    });

    // Stopped by hand: the supervisor says so, /health names it, and the fallback answers.
    let out = agent.cli(&["stop", "chat-server"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until("/health to show the stopped service", LONG, || {
        let (status, body) = http(gw_port, "GET", "/health", "");
        status == 200 && body.contains("service chat-server: chat-server: stopped")
    });
    let (status, body) = http(gw_port, "GET", "/health", "");
    assert_eq!(status, 200, "the route still has its fallback: {body}");
    assert!(body.contains("\"service\":\"chat-server\""), "{body}");
    for _ in 0..5 {
        let (status, body) = chat(gw_port);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("hi from fallback-7b"), "{body}");
    }

    // Started again: once it is healthy, traffic returns to it.
    let out = agent.cli(&["start", "chat-server"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until("traffic to return to the service", LONG, || {
        let (status, body) = chat(gw_port);
        assert_eq!(status, 200, "{body}");
        body.contains("hi from primary-7b")
    });
    assert!(agent.down().success());
    assert!(
        agent
            .agent_log()
            .contains("gateway: chat -> http://127.0.0.1:"),
        "each request is logged:\n{}",
        agent.agent_log()
    );
}

#[test]
fn the_access_log_has_refusals_and_streams_that_broke_midway() {
    let dir = tempfile::tempdir().unwrap();
    let (backend_port, gw_port) = (free_port(), free_port());
    let mut procs = Kill(Vec::new());
    procs.0.push(
        Command::new("python3")
            .args(["-c", MOCK, &backend_port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::fs::write(
        dir.path().join("steward.toml"),
        format!(
            "[gateway]\nlisten = \"127.0.0.1:{gw_port}\"\napi_keys = [\"sk-test\"]\n[[gateway.routes]]\nmodel = \"dying\"\nbackends = [{{ url = \"http://127.0.0.1:{backend_port}\", name = \"mock\" }}]\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
    procs.0.push(
        Command::new(BIN)
            .args(["gateway", "-f", "steward.toml"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_until("the gateway and the backend to listen", LONG, || {
        std::net::TcpStream::connect(("127.0.0.1", gw_port)).is_ok()
            && std::net::TcpStream::connect(("127.0.0.1", backend_port)).is_ok()
    });
    let (status, _) = http(gw_port, "GET", "/v1/models", "");
    assert_eq!(status, 401);
    let out = Command::new("python3")
        .args(["-c", "import sys, urllib.request\nr = urllib.request.Request(sys.argv[1], data=b'{\"model\": \"dying\", \"stream\": true}', headers={'Authorization': 'Bearer sk-test'})\ntry:\n    print(urllib.request.urlopen(r, timeout=20).read().decode())\nexcept Exception as e:\n    print('broke:', e)\n", &format!("http://127.0.0.1:{gw_port}/v1/chat/completions")])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("failed mid-stream") || text.contains("broke"),
        "{text}"
    );
    let log = || std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
    wait_until("both lines in the access log", LONG, || {
        let l = log();
        l.contains("GET /v1/models: 401")
            && l.contains("dying -> mock: failed after its first byte")
    });
}
