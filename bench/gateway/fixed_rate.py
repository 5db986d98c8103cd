#!/usr/bin/env python3
"""bench/gateway/fixed_rate.py: the added latency of a gateway at fixed request rates.

The same mock backend (crates/steward-gateway/examples/mock_backend.rs, answering at once),
hit at a fixed rate with the same load generator (oha, from crates.io: `cargo install oha`):
directly, through `steward gateway`, and through LiteLLM's proxy (PyPI `litellm[proxy]`)
pointed at the same mock. steward runs twice: with STEWARD_LOG=warn, and with its default
access line per request written to a file. Reports p50/p99 at 1,000 and 5,000 req/s, and the highest rate of
a ladder each sustains with p99 under 10 ms.

Usage: bench/gateway/fixed_rate.py [--seconds 8]
"""
import argparse, json, os, shutil, socket, subprocess, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OHA = shutil.which("oha") or os.path.expanduser("~/.cargo/bin/oha")
BODY = '{"model":"chat","messages":[{"role":"user","content":"hi"}]}'
# LiteLLM's proxy refuses to start without a master key; the others ignore the header.
KEY = "sk-bench-0123456789abcdef"


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def wait_http(url, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            import urllib.request
            urllib.request.urlopen(url, timeout=1)
            return True
        except Exception as e:
            if hasattr(e, "code"):
                return True
            time.sleep(0.2)
    return False


def load(url, rate, seconds):
    out = subprocess.run([OHA, "-z", f"{seconds}s", "-q", str(rate), "-c", "64", "--latency-correction", "--no-tui",
                          "--output-format", "json", "-m", "POST", "-H", "content-type: application/json",
                          "-H", f"authorization: Bearer {KEY}", "-d", BODY, url],
                         capture_output=True, text=True)
    r = json.loads(out.stdout)
    p = r["latencyPercentiles"]
    ms = lambda v: float("inf") if v is None else v * 1000
    return r["summary"]["successRate"] or 0.0, r["summary"]["requestsPerSec"] or 0.0, ms(p["p50"]), ms(p["p99"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=8)
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "-q", "--release", "--locked", "-p", "steward-gateway", "--example", "mock_backend"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "-q", "--release", "--locked"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="bench-gw-")
    bport, gport, lport = free_port(), free_port(), free_port()
    procs = [subprocess.Popen([os.path.join(ROOT, "target/release/examples/mock_backend"), str(bport)])]
    open(os.path.join(work, "steward.toml"), "w").write(
        f'[gateway]\nlisten = "127.0.0.1:{gport}"\n[[gateway.routes]]\nmodel = "chat"\nbackends = [{{ url = "http://127.0.0.1:{bport}" }}]\n')
    procs.append(subprocess.Popen([os.path.join(ROOT, "target/release/steward"), "gateway", "-f", "steward.toml"], cwd=work,
                                  env={**os.environ, "STEWARD_LOG": "warn"}, stderr=subprocess.DEVNULL))
    # The same gateway with its default logging: one access line per request, to a file.
    aport = free_port()
    open(os.path.join(work, "logged.toml"), "w").write(
        f'[gateway]\nlisten = "127.0.0.1:{aport}"\n[[gateway.routes]]\nmodel = "chat"\nbackends = [{{ url = "http://127.0.0.1:{bport}" }}]\n')
    procs.append(subprocess.Popen([os.path.join(ROOT, "target/release/steward"), "gateway", "-f", "logged.toml"], cwd=work,
                                  stderr=open(os.path.join(work, "access.log"), "w")))
    targets = [("direct", f"http://127.0.0.1:{bport}/v1/chat/completions"), ("steward", f"http://127.0.0.1:{gport}/v1/chat/completions"),
               ("steward, access log on", f"http://127.0.0.1:{aport}/v1/chat/completions")]
    if shutil.which("litellm"):
        open(os.path.join(work, "litellm.yaml"), "w").write(
            "model_list:\n  - model_name: chat\n    litellm_params:\n      model: openai/mock\n"
            f"      api_base: http://127.0.0.1:{bport}/v1\n      api_key: sk-none\n")
        # Local cost map: the proxy must not reach out to the internet.
        env = {**os.environ, "LITELLM_MASTER_KEY": KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        procs.append(subprocess.Popen(["litellm", "--config", "litellm.yaml", "--port", str(lport), "--host", "127.0.0.1"], cwd=work,
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if wait_http(f"http://127.0.0.1:{lport}/health/liveliness", 120):
            targets.append(("litellm proxy", f"http://127.0.0.1:{lport}/v1/chat/completions"))
        else:
            print("# litellm proxy did not come up; left out", file=sys.stderr)
    wait_http(f"http://127.0.0.1:{gport}/health")
    wait_http(f"http://127.0.0.1:{aport}/health")
    try:
        print("\n| path | rate | success | p50 | p99 |")
        print("|---|---|---|---|---|")
        base = {}
        for name, url in targets:
            for rate in (1000, 5000):
                ok, rps, p50, p99 = load(url, rate, a.seconds)
                base.setdefault(rate, (p50, p99)) if name == "direct" else None
                print(f"| {name} | {rate}/s | {ok*100:.1f}% | {p50:.2f} ms | {p99:.2f} ms |", flush=True)
        print("\n| path | highest rate with p99 < 10 ms (ladder 100..40k) |")
        print("|---|---|")
        for name, url in targets:
            best = 0
            for rate in (100, 200, 500, 1000, 2000, 5000, 10000, 20000, 40000):
                ok, rps, p50, p99 = load(url, rate, a.seconds)
                if ok < 0.999 or p99 >= 10 or rps < rate * 0.95:
                    break
                best = rate
            print(f"| {name} | {best}/s |", flush=True)
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
