#!/usr/bin/env python3
"""bench/gateway/ab.py: two steward builds' gateways side by side, alternating, against the
same mock backend and the direct floor: p50/p99 at 1,000 and 5,000 req/s, three rounds.
For "did this change cost anything?" on a noisy machine, where only alternating runs in
one session compare.

Usage: bench/gateway/ab.py OLD_STEWARD NEW_STEWARD [--seconds 5]
Needs: oha (`cargo install oha`), and `cargo build --release --locked -p steward-gateway
--example mock_backend`.
"""
import argparse, json, os, shutil, subprocess, socket, sys, tempfile, time, urllib.request
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OHA = shutil.which("oha") or os.path.expanduser("~/.cargo/bin/oha")
BODY = '{"model":"chat","messages":[{"role":"user","content":"hi"}]}'
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def wait(url):
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=1); return
        except Exception as e:
            if hasattr(e, "code"): return
            time.sleep(0.1)
def load(url, rate, seconds):
    out = subprocess.run([OHA, "-z", f"{seconds}s", "-q", str(rate), "-c", "64", "--latency-correction", "--no-tui",
        "--output-format", "json", "-m", "POST", "-H", "content-type: application/json", "-d", BODY, url], capture_output=True, text=True)
    r = json.loads(out.stdout); p = r["latencyPercentiles"]
    return p["p50"]*1000, p["p99"]*1000
ap = argparse.ArgumentParser()
ap.add_argument("old")
ap.add_argument("new")
ap.add_argument("--seconds", type=int, default=5)
a = ap.parse_args()
bport = free_port()
procs = [subprocess.Popen([os.path.join(ROOT, "target/release/examples/mock_backend"), str(bport)])]
work = tempfile.mkdtemp()
targets = {}
for name, binary in [("old", a.old), ("new", a.new)]:
    port = free_port()
    d = os.path.join(work, name); os.makedirs(d)
    open(os.path.join(d, "steward.toml"), "w").write(f'[gateway]\nlisten = "127.0.0.1:{port}"\n[[gateway.routes]]\nmodel = "chat"\nbackends = [{{ url = "http://127.0.0.1:{bport}" }}]\n')
    procs.append(subprocess.Popen([binary, "gateway", "-f", "steward.toml"], cwd=d, env=dict(os.environ, STEWARD_LOG="warn"), stderr=subprocess.DEVNULL))
    targets[name] = f"http://127.0.0.1:{port}/v1/chat/completions"
wait(f"http://127.0.0.1:{bport}/health")
for t in targets.values(): wait(t.replace("/v1/chat/completions", "/health"))
targets["direct"] = f"http://127.0.0.1:{bport}/v1/chat/completions"
secs = a.seconds
res = {}
try:
    for rnd in range(3):
        for rate in (1000, 5000):
            for name in ("direct", "old", "new"):
                res.setdefault((name, rate), []).append(load(targets[name], rate, secs))
finally:
    for p in procs: p.kill()
print("| path | rate | p50 (3 runs) | p99 (3 runs) |\n|---|---|---|---|")
for (name, rate), v in sorted(res.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    print(f"| {name} | {rate}/s | {' / '.join(f'{a:.2f}' for a,_ in v)} ms | {' / '.join(f'{b:.2f}' for _,b in v)} ms |")
