#!/usr/bin/env python3
"""bench/queue: the durable queue, measured three ways in one run.

1. End-to-end jobs/s (enqueue, lease, complete; every commit durable) at 1, 8 and 64
   in-process workers, against Redis with `appendfsync always` and `everysec` (LPUSH +
   BLMOVE + LREM) in the same run: `cargo bench -p steward-queue --bench throughput`.
2. Lease latency through the HTTP lease API of a running agent (p50, p99), using the
   Python client that ships in clients/python.
3. `steward queue add` of N small files (default 1,000,000): walk, hash, insert.
4. The same on PostgreSQL, on one durable throwaway cluster (crates/steward-pgtest's
   pg-cluster): the store against Graphile Worker at 1, 8 and 64 workers, the claim with
   1,000,000 finished + 100,000 pending jobs against none on both stores
   (`cargo bench -p steward-queue --bench postgres`), 1 and 3 real agents sharing one
   queue, lease latency through the HTTP API, and `steward queue add` into PostgreSQL.

Usage: bench/queue/run.py [--jobs 20000] [--leases 2000] [--files 1000000]
                          [--history 1000000] [--fleet-jobs 3000] [--no-sqlite] [--no-pg]
Needs: a release build (cargo build --release --locked), Debian's redis-server and
postgresql, node and npm (Graphile Worker is installed into bench/queue/node_modules).
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STEWARD = os.path.join(ROOT, "target", "release", "steward")
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))


def throughput(jobs):
    out = subprocess.run(["cargo", "bench", "-q", "--locked", "-p", "steward-queue", "--bench", "throughput", "--", str(jobs)],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return "\n".join(l for l in out.splitlines() if l.startswith("|"))


def lease_latency(n, queue_url=None):
    from steward_worker import Worker
    work = tempfile.mkdtemp(prefix="bench-lease-")
    os.makedirs(os.path.join(work, "in"))
    for i in range(n):
        open(os.path.join(work, "in", f"{i}.txt"), "w").write(str(i))
    open(os.path.join(work, "steward.toml"), "w").write(queue_section(queue_url) +
        '[pipelines.lat]\nmode = "lease"\nworker = ["sleep", "1000000"]\ninputs = ["in"]\n')
    agent = subprocess.Popen([STEWARD, "up", "-f", "steward.toml"], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=env_with(queue_url))
    try:
        url = token = None
        deadline = time.time() + 30
        while url is None and time.time() < deadline:
            ps = subprocess.run([STEWARD, "ps", "--json", "-f", "steward.toml"], cwd=work, capture_output=True, text=True)
            if ps.returncode == 0:
                pid = json.loads(ps.stdout)["services"][0].get("pid")
                if pid:
                    env = dict(e.split(b"=", 1) for e in open(f"/proc/{pid}/environ", "rb").read().split(b"\0") if b"=" in e)
                    url = env.get(b"STEWARD_URL", b"").decode() or None
                    token = env.get(b"STEWARD_TOKEN", b"").decode() or None
            time.sleep(0.05)
        # The bench acts as replica lat's worker (it holds no lease of its own otherwise),
        # with that replica's secret (read as root from its environment).
        w = Worker(url=url, queue="lat", name="lat", token=token)
        lat = []
        for _ in range(n):
            t = time.perf_counter()
            job = w.lease(wait=0)
            lat.append(time.perf_counter() - t)
            if job is None:
                break
            job._done.set()
            job.complete()
        lat.sort()
        return lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000, len(lat)
    finally:
        subprocess.run([STEWARD, "down", "-f", "steward.toml"], cwd=work, capture_output=True)
        agent.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


def queue_section(url):
    """The config's [queue]: the URL is read from the environment, never written down."""
    return '[queue]\nurl = "env:STEWARD_QUEUE_URL"\n\n' if url else ""


def env_with(url):
    env = {**os.environ, "STEWARD_LOG": "warn"}
    if url:
        env["STEWARD_QUEUE_URL"] = url
    return env


def enqueue_files(n, queue_url=None):
    work = tempfile.mkdtemp(prefix="bench-add-")
    d = os.path.join(work, "in")
    for b in range(0, n, 10000):
        sub = os.path.join(d, f"{b // 10000:04d}")
        os.makedirs(sub)
        for i in range(b, min(n, b + 10000)):
            with open(os.path.join(sub, f"{i}.pdf"), "w") as f:
                f.write(f"file {i}\n")
    open(os.path.join(work, "steward.toml"), "w").write(queue_section(queue_url))
    t = time.perf_counter()
    out = subprocess.run([STEWARD, "queue", "-f", "steward.toml", "add", "big", "in", "--force"], cwd=work, capture_output=True, text=True,
                         env=env_with(queue_url))
    took = time.perf_counter() - t
    shutil.rmtree(work, ignore_errors=True)
    return took, out.stdout.strip() or out.stderr.strip()


class PgCluster:
    """One durable throwaway cluster for every PostgreSQL measurement of this run."""

    def __init__(self):
        subprocess.run(["cargo", "build", "-q", "--release", "--locked", "-p", "steward-pgtest", "--bin", "pg-cluster"],
                       cwd=ROOT, check=True)
        self.proc = subprocess.Popen([os.path.join(ROOT, "target", "release", "pg-cluster")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.base = self.proc.stdout.readline().strip()

    def db(self):
        self.proc.stdin.write("db\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def graphile_installed():
    here = os.path.dirname(os.path.abspath(__file__))
    if not os.path.exists(os.path.join(here, "node_modules", "graphile-worker")):
        subprocess.run(["npm", "install", "--silent", "--prefix", here], check=True)


def pg_store_table(cluster, jobs, history):
    out = subprocess.run(["cargo", "bench", "-q", "--locked", "-p", "steward-queue", "--bench", "postgres", "--", str(jobs), str(history)],
                         cwd=ROOT, capture_output=True, text=True, check=True, env={**os.environ, "STEWARD_BENCH_PG": cluster.base}).stdout
    return "\n".join(l if l.startswith("|") else "" for l in out.splitlines()).strip()


def fleet(cluster, agents, jobs):
    """`agents` real agents (`steward run --until-empty`, each its own node and state dir)
    drain one PostgreSQL queue of `jobs` per-job runs of `true`, 4 slots each: jobs/s, and
    how many jobs ran more than once."""
    url = cluster.db()
    work = tempfile.mkdtemp(prefix="bench-fleet-")
    os.makedirs(os.path.join(work, "in"))
    for i in range(jobs):
        open(os.path.join(work, "in", f"{i}.txt"), "w").write(f"job {i}\n")
    for a in range(agents):
        node = os.path.join(work, f"node-{a}")
        os.makedirs(node)
        open(os.path.join(node, "steward.toml"), "w").write(
            queue_section(url) + f'[node]\nname = "bench-{a}"\n\n[pipelines.fleet]\n'
            f'command = ["sh", "-c", "echo \\"$1\\" >> {work}/runs.log", "job", "{{input}}"]\nreplicas = 4\n')
    subprocess.run([STEWARD, "queue", "-f", os.path.join(work, "node-0", "steward.toml"), "add", "fleet", os.path.join(work, "in")],
                   check=True, capture_output=True, env=env_with(url))
    t = time.perf_counter()
    procs = [subprocess.Popen([STEWARD, "run", "-f", "steward.toml", "--until-empty"], cwd=os.path.join(work, f"node-{a}"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env_with(url)) for a in range(agents)]
    for p in procs:
        p.wait(timeout=1800)
    took = time.perf_counter() - t
    runs = open(os.path.join(work, "runs.log")).read().splitlines()
    shutil.rmtree(work, ignore_errors=True)
    return jobs / took, len(set(runs)), len(runs) - len(set(runs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=20000)
    ap.add_argument("--leases", type=int, default=2000)
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--history", type=int, default=1_000_000)
    ap.add_argument("--fleet-jobs", type=int, default=3000)
    ap.add_argument("--no-sqlite", action="store_true", help="skip the SQLite and Redis sections")
    ap.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL sections")
    a = ap.parse_args()
    if not os.path.exists(STEWARD):
        sys.exit(f"build steward first: cargo build --release --locked ({STEWARD} is missing)")
    if not a.no_sqlite:
        print(f"\n## End to end, {a.jobs} jobs, {os.cpu_count()} CPUs\n")
        print(throughput(a.jobs))
        p50, p99, n = lease_latency(a.leases)
        print(f"\n## Lease latency through the HTTP API ({n} leases, Python client)\n\n| p50 | p99 |\n|---|---|\n| {p50:.2f} ms | {p99:.2f} ms |")
        took, summary = enqueue_files(a.files)
        print(f"\n## steward queue add, {a.files} small files\n\n{took:.1f} s ({a.files / took:.0f} files/s): {summary}")
    if a.no_pg:
        return
    graphile_installed()
    cluster = PgCluster()
    try:
        print(f"\n## PostgreSQL (one durable cluster), {a.jobs} jobs end to end\n")
        print(pg_store_table(cluster, a.jobs, a.history))
        print(f"\n## Real agents sharing one PostgreSQL queue ({a.fleet_jobs} per-job runs, 4 slots an agent)\n")
        print("| agents | jobs/s | jobs run | ran twice |\n|---|---|---|---|")
        for agents in (1, 3):
            rate, ran, twice = fleet(cluster, agents, a.fleet_jobs)
            print(f"| {agents} | {rate:.0f} | {ran} | {twice} |")
        p50, p99, n = lease_latency(a.leases, cluster.db())
        print(f"\n## Lease latency through the HTTP API on PostgreSQL ({n} leases)\n\n| p50 | p99 |\n|---|---|\n| {p50:.2f} ms | {p99:.2f} ms |")
        took, summary = enqueue_files(a.files, cluster.db())
        print(f"\n## steward queue add into PostgreSQL, {a.files} small files\n\n{took:.1f} s ({a.files / took:.0f} files/s): {summary}")
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
