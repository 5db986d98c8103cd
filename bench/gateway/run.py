#!/usr/bin/env python3
"""bench/gateway: steward's gateway beside nginx, LiteLLM and the direct path, in one run.

The same mock backend (crates/steward-gateway/examples/mock_backend.rs, a hyper server that
answers every POST at once with a small chat completion) is reached:
  * directly (the floor);
  * through nginx (Debian's nginx-light): `proxy_pass` to an upstream with a keepalive
    pool, HTTP/1.1 to the backend, access log off, `worker_processes auto`;
  * through `steward gateway` (STEWARD_LOG=warn: no access line, as nginx);
  * through LiteLLM's proxy, when `litellm` is on PATH (pip install 'litellm[proxy]').

Measured:
  * at saturation with wrk (POST, 2 threads, C connections, S seconds), in alternating
    rounds: requests/s, p50, p99, and each proxy's CPU time per request (its processes'
    utime+stime over the run, from /proc);
  * at fixed rates with oha and latency correction (1,000 and 5,000 req/s by default):
    p50, p99, and what each proxy adds to the direct path's.

Usage: bench/gateway/run.py [--seconds 8] [--connections 64] [--rounds 2] [--rates 1000,5000] [--steward BIN]
Needs: apt-get install -y wrk nginx-light; for fixed rates, oha (cargo install oha --locked);
optionally LiteLLM. Prints markdown tables.
"""
import argparse, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from measure import CLK, ROOT  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OHA = shutil.which("oha") or os.path.expanduser("~/.cargo/bin/oha")
BODY = '{"model":"chat","messages":[{"role":"user","content":"hi"}]}'
# LiteLLM's proxy refuses to start without a master key; the others ignore the header.
KEY = "sk-bench-0123456789abcdef"
PATH = "/v1/chat/completions"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return True
        except Exception as e:
            if hasattr(e, "code"):
                return True
            time.sleep(0.1)
    return False


def tree_cpu(root_pid):
    """utime+stime in seconds of a process and its children (nginx's workers)."""
    pids = [root_pid]
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == root_pid:
                        pids.append(int(p))
            except OSError:
                pass
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / CLK


def ms(text):
    """wrk's latency ('812.00us', '1.20ms', '2.01s') in milliseconds."""
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v


def saturate(url, seconds, conns, pid):
    c0 = tree_cpu(pid) if pid else 0
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency",
                          "-s", os.path.join(HERE, "post.lua"), url], capture_output=True, text=True).stdout
    cpu = tree_cpu(pid) - c0 if pid else None
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    per_req = cpu / total * 1e6 if cpu is not None and total else None
    return rps, p50, p99, per_req, int(errors.group(1)) if errors else 0


def fixed(url, rate, seconds):
    out = subprocess.run([OHA, "-z", f"{seconds}s", "-q", str(rate), "-c", "64", "--latency-correction", "--no-tui",
                          "--output-format", "json", "-m", "POST", "-H", "content-type: application/json",
                          "-H", f"authorization: Bearer {KEY}", "-d", BODY, url], capture_output=True, text=True)
    r = json.loads(out.stdout)
    p = r["latencyPercentiles"]
    val = lambda v: float("inf") if v is None else v * 1000
    return r["summary"]["successRate"] or 0.0, val(p["p50"]), val(p["p99"])


NGINX_CONF = """
worker_processes auto;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work}/nginx-body;
  proxy_temp_path {work}/nginx-proxy;
  fastcgi_temp_path {work}/nginx-fastcgi;
  uwsgi_temp_path {work}/nginx-uwsgi;
  scgi_temp_path {work}/nginx-scgi;
  upstream mock {{ server 127.0.0.1:{backend}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2, help="alternating saturation rounds")
    ap.add_argument("--rates", default="1000,5000", help="fixed rates (needs oha); empty: none")
    ap.add_argument("--steward", help="a steward binary to measure instead of this checkout's release build")
    a = ap.parse_args()
    for tool, how in (("wrk", "apt-get install -y wrk"), ("nginx", "apt-get install -y nginx-light")):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"install {tool} first: {how}")
    subprocess.run(["cargo", "build", "-q", "--release", "--locked", "-p", "steward-gateway", "--example", "mock_backend"],
                   cwd=ROOT, check=True)
    if not a.steward:
        subprocess.run(["cargo", "build", "-q", "--release", "--locked"], cwd=ROOT, check=True)
    binary = os.path.abspath(a.steward or os.path.join(ROOT, "target/release/steward"))
    work = tempfile.mkdtemp(prefix="bench-gw-")
    bport, gport, nport, lport = free_port(), free_port(), free_port(), free_port()
    procs = []
    try:
        procs.append(subprocess.Popen([os.path.join(ROOT, "target/release/examples/mock_backend"), str(bport)]))
        with open(os.path.join(work, "steward.toml"), "w") as f:
            f.write(f'[gateway]\nlisten = "127.0.0.1:{gport}"\n[[gateway.routes]]\nmodel = "chat"\n'
                    f'backends = [{{ url = "http://127.0.0.1:{bport}" }}]\n')
        steward = subprocess.Popen([binary, "gateway", "-f", "steward.toml"],
                                   cwd=work, env={**os.environ, "STEWARD_LOG": "warn"}, stderr=subprocess.DEVNULL)
        procs.append(steward)
        with open(os.path.join(work, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF.format(work=work, backend=bport, port=nport))
        nginx = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-p", work, "-c", os.path.join(work, "nginx.conf")],
                                 stderr=subprocess.DEVNULL)
        procs.append(nginx)
        targets = [("direct", f"http://127.0.0.1:{bport}{PATH}", None),
                   ("nginx", f"http://127.0.0.1:{nport}{PATH}", nginx.pid),
                   ("steward", f"http://127.0.0.1:{gport}{PATH}", steward.pid)]
        if shutil.which("litellm"):
            with open(os.path.join(work, "litellm.yaml"), "w") as f:
                f.write("model_list:\n  - model_name: chat\n    litellm_params:\n      model: openai/mock\n"
                        f"      api_base: http://127.0.0.1:{bport}/v1\n      api_key: sk-none\n")
            # Local cost map: the proxy must not reach out to the internet.
            env = {**os.environ, "LITELLM_MASTER_KEY": KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
            litellm = subprocess.Popen(["litellm", "--config", "litellm.yaml", "--port", str(lport), "--host", "127.0.0.1"],
                                       cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(litellm)
            if wait_http(f"http://127.0.0.1:{lport}/health/liveliness", 120):
                targets.append(("litellm proxy", f"http://127.0.0.1:{lport}{PATH}", litellm.pid))
            else:
                print("# litellm proxy did not come up; left out", file=sys.stderr)
        for _, url, _ in targets:
            if not wait_http(url):
                sys.exit(f"{url} did not answer")

        print(f"\nAt saturation: wrk -t2 -c{a.connections} -d{a.seconds}s, POST {len(BODY)} bytes, "
              f"{a.rounds} alternating rounds, {os.cpu_count()} CPUs\n")
        print("| round | path | requests/s | p50 | p99 | proxy CPU per request | non-2xx |")
        print("|---|---|---|---|---|---|---|")
        best = {}
        for r in range(1, a.rounds + 1):
            for name, url, pid in targets:
                if name == "litellm proxy":
                    continue  # far below saturation of the others; it is in the fixed-rate table
                rps, p50, p99, cpu, bad = saturate(url, a.seconds, a.connections, pid)
                cpu_s = "-" if cpu is None else f"{cpu:.1f} µs"
                print(f"| {r} | {name} | {rps:,.0f} | {p50:.2f} ms | {p99:.2f} ms | {cpu_s} | {bad} |", flush=True)
                if name not in best or rps > best[name][0]:
                    best[name] = (rps, p50, p99, cpu)
        if "nginx" in best and "steward" in best:
            s, n = best["steward"], best["nginx"]
            print(f"\nsteward / nginx (best round of each): throughput {s[0]/n[0]:.2f}x, p99 {s[2]/n[2]:.2f}x, "
                  f"CPU per request {s[3]/n[3]:.2f}x")

        rates = [int(x) for x in a.rates.split(",") if x]
        if rates and not os.path.exists(OHA):
            print("\n(no fixed-rate table: install oha with `cargo install oha --locked`)")
            rates = []
        if rates:
            print(f"\nAt fixed rates: oha -c 64 --latency-correction, {a.seconds} s per rate\n")
            print("| path | rate | success | p50 | p99 | added p50 | added p99 |")
            print("|---|---|---|---|---|---|---|")
            floor = {}
            for name, url, _ in targets:
                for rate in rates:
                    ok, p50, p99 = fixed(url, rate, a.seconds)
                    if name == "direct":
                        floor[rate] = (p50, p99)
                    added = "-" if name == "direct" else f"{p50 - floor[rate][0]:.2f} ms"
                    added99 = "-" if name == "direct" else f"{p99 - floor[rate][1]:.2f} ms"
                    print(f"| {name} | {rate:,}/s | {ok*100:.1f}% | {p50:.2f} ms | {p99:.2f} ms | {added} | {added99} |",
                          flush=True)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
