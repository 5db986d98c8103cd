#!/usr/bin/env python3
"""bench/http: the agent's HTTP face with 1,000 services, next to supervisord's web page.

Measures in the same run, with N long-running programs (`sleep`) under each supervisor:
  * steward: GET /metrics p50/p99, GET /api/v1/services p50/p99, the agent's RSS, and its
    idle CPU over a window with no client against the same window with one dashboard
    (an open /api/v1/events stream, and what the page reads every 30 s);
  * supervisord (inet_http_server): GET / (its web page, which lists every program) and
    the XML-RPC getAllProcessInfo p50/p99, and its RSS.

Usage: bench/http/run.py [--services 1000] [--requests 200] [--idle-seconds 30]
Needs: a release build (cargo build --release --locked) and Debian's `supervisor`
(apt-get install supervisor). process-compose is not packaged by Debian; it is left out.
Prints a markdown table.
"""
import argparse, http.client, os, shutil, socket, subprocess, sys, tempfile, threading, time
import xmlrpc.client

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from measure import CLK, ROOT, STEWARD, cpu_seconds, pct, rss_mib, wait_until  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]










def get(port, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def timed(fn, n):
    fn()  # warm
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def steward_run(work, n, requests, idle_s):
    port = free_port()
    with open(os.path.join(work, "steward.toml"), "w") as f:
        f.write(f'state_dir = "{work}/state"\n[http]\nlisten = "127.0.0.1:{port}"\n')
        for i in range(n):
            f.write(f'[services.s{i:04}]\ncommand = ["sleep", "1000000"]\n')
    agent = subprocess.Popen([STEWARD, "up", "-f", os.path.join(work, "steward.toml")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def all_running():
            status, body = get(port, "/api/v1/services")
            return status == 200 and body.count(b'"state":"running"') == n
        wait_until(all_running, timeout=300, what=f"{n} services running under steward", every=0.05)
        metrics = timed(lambda: get(port, "/metrics"), requests)
        services = timed(lambda: get(port, "/api/v1/services"), requests)
        size = len(get(port, "/metrics")[1])
        rss = rss_mib(agent.pid)
        time.sleep(2)
        c0 = cpu_seconds(agent.pid)
        time.sleep(idle_s)
        idle = (cpu_seconds(agent.pid) - c0) / idle_s * 100
        # One dashboard: the event stream open, and the services read every 30 s (as the page does).
        stop = threading.Event()

        def page():
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            s.settimeout(0.5)
            last = 0
            while not stop.is_set():
                try:
                    s.recv(65536)
                except socket.timeout:
                    pass
                if time.time() - last >= 30:
                    get(port, "/api/v1/services")
                    last = time.time()
            s.close()
        t = threading.Thread(target=page)
        t.start()
        time.sleep(2)
        c0 = cpu_seconds(agent.pid)
        time.sleep(idle_s)
        with_page = (cpu_seconds(agent.pid) - c0) / idle_s * 100
        stop.set()
        t.join()
        return {"metrics": metrics, "services": services, "rss": rss, "idle": idle,
                "idle_page": with_page, "metrics_bytes": size}
    finally:
        agent.terminate()
        agent.wait(timeout=120)


def supervisord_run(work, n, requests):
    port = free_port()
    conf = os.path.join(work, "supervisord.conf")
    with open(conf, "w") as f:
        f.write(f"[supervisord]\nnodaemon=true\nlogfile={work}/supervisord.log\npidfile={work}/supervisord.pid\nloglevel=warn\n"
                f"[inet_http_server]\nport=127.0.0.1:{port}\n"
                "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n")
        for i in range(n):
            f.write(f"[program:s{i:04}]\ncommand=sleep 1000000\nautorestart=true\nstartsecs=0\n"
                    f"stdout_logfile={work}/s{i:04}.log\nredirect_stderr=true\n")
    proc = subprocess.Popen([shutil.which("supervisord"), "-n", "-c", conf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rpc = lambda: xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/RPC2")
        wait_until(lambda: sum(p["statename"] == "RUNNING" for p in rpc().supervisor.getAllProcessInfo()) == n,
                   timeout=300, what=f"{n} programs running under supervisord", every=0.05)
        page = timed(lambda: get(port, "/"), requests)
        info = timed(lambda: rpc().supervisor.getAllProcessInfo(), requests)
        return {"page": page, "rpc": info, "rss": rss_mib(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(timeout=120)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--idle-seconds", type=int, default=30)
    a = ap.parse_args()
    if not os.path.exists(STEWARD):
        sys.exit("build steward first: cargo build --release --locked")
    if not shutil.which("supervisord"):
        sys.exit("install supervisord first: apt-get install -y supervisor")
    with tempfile.TemporaryDirectory() as w1, tempfile.TemporaryDirectory() as w2:
        st = steward_run(w1, a.services, a.requests, a.idle_seconds)
        sv = supervisord_run(w2, a.services, a.requests)
    ms = lambda v: f"{pct(v, 50):.1f} / {pct(v, 99):.1f}"
    print(f"\n{a.services} services, {a.requests} requests each (p50 / p99 ms):\n")
    print("| | steward | supervisord 4.2 | ratio (p99) |")
    print("|---|---|---|---|")
    print(f"| all services' state, JSON (`/api/v1/services` vs XML-RPC `getAllProcessInfo`) | {ms(st['services'])} | {ms(sv['rpc'])} | {pct(st['services'], 99) / pct(sv['rpc'], 99):.2f}x |")
    print(f"| the page people open (`/` is static for steward: its data is the row above) vs supervisord's `/` | - | {ms(sv['page'])} | |")
    print(f"| `/metrics` scrape ({st['metrics_bytes'] // 1024} KiB) | {ms(st['metrics'])} | - (none) | |")
    print(f"| RSS with {a.services} services | {st['rss']:.1f} MiB | {sv['rss']:.1f} MiB | {st['rss'] / sv['rss']:.2f}x |")
    print(f"| idle CPU, no client | {st['idle']:.3f}% of a core | | |")
    print(f"| idle CPU, one dashboard open (SSE + a read every 30 s) | {st['idle_page']:.3f}% of a core (+{st['idle_page'] - st['idle']:.3f}) | | |")


if __name__ == "__main__":
    main()
