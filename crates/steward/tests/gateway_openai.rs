//! The official `openai` Python client (PyPI) against `steward gateway`, non-streaming and
//! streaming, with a mock OpenAI backend (python3's http.server) behind it.

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
