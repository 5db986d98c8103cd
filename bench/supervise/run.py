#!/usr/bin/env python3
"""bench/supervise: steward against supervisord (and a direct spawn) on the same programs.

Measures, for each supervisor in the same run:
  * up -> all N programs running (each program writes its own start time, so the number
    does not depend on how the supervisor reports state);
  * crash -> replacement running: SIGKILL one child, time until its replacement writes
    its start time (p50, p99), with restart backoff set to zero;
  * the supervisor's RSS and idle CPU with M children, over an idle window.

Usage: bench/supervise/run.py [--programs 50] [--kills 200] [--idle-children 100] [--idle-seconds 10]
Needs: a release build (cargo build --release --locked) and Debian's `supervisor` package
(apt-get install supervisor). Prints a markdown table.
"""
import argparse, os, shutil, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from measure import CLK, ROOT, STEWARD, cpu_seconds, pct, rss_mib, wait_until  # noqa: E402

# Writes "<epoch seconds> <pid>" to its own file, then becomes a long sleep.
PROGRAM = 'echo "$(date +%s.%N) $$" >> {file}; exec sleep 1000000'




def lines(path):
    try:
        with open(path) as f:
            return [l.split() for l in f.read().splitlines() if l.strip()]
    except FileNotFoundError:
        return []








class Steward:
    name = "steward"

    def __init__(self, work, n):
        self.work = work
        with open(os.path.join(work, "steward.toml"), "w") as f:
            f.write('state_dir = "state"\n')
            for i in range(n):
                f.write(
                    f'[services.p{i}]\ncommand = \'{PROGRAM.format(file=os.path.join(work, "starts", f"p{i}"))}\'\n'
                    'shell = true\nrestart = "always"\n'
                    'backoff = { initial = "0s", max = "0s", jitter = 0.0 }\n'
                    'crash_loop = { exits = 100000, window = "1s" }\n'
                )

    def start(self):
        self.proc = subprocess.Popen([STEWARD, "up", "-f", os.path.join(self.work, "steward.toml")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "STEWARD_LOG": "warn"})
        return self.proc.pid

    def stop(self):
        subprocess.run([STEWARD, "down", "-f", os.path.join(self.work, "steward.toml")], capture_output=True)
        self.proc.wait(timeout=60)


class Supervisord:
    name = "supervisord"

    def __init__(self, work, n):
        self.work = work
        self.conf = os.path.join(work, "supervisord.conf")
        with open(self.conf, "w") as f:
            f.write(f"[supervisord]\nnodaemon=true\nlogfile={work}/supervisord.log\npidfile={work}/supervisord.pid\nloglevel=warn\n")
            f.write(f"[unix_http_server]\nfile={work}/supervisor.sock\n")
            f.write("[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n")
            f.write(f"[supervisorctl]\nserverurl=unix://{work}/supervisor.sock\n")
            for i in range(n):
                # supervisord's config interpolates %(name)s, so a literal % is written %%.
                cmd = PROGRAM.format(file=os.path.join(work, "starts", f"p{i}")).replace("%", "%%")
                f.write(f"[program:p{i}]\ncommand=sh -c '{cmd}'\nautorestart=true\nstartsecs=0\nstartretries=100000\n"
                        "stdout_logfile=NONE\nstderr_logfile=NONE\n")

    def start(self):
        exe = shutil.which("supervisord")
        self.proc = subprocess.Popen([exe, "-n", "-c", self.conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self.proc.pid

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


class Direct:
    """The floor: Python starts each program itself and restarts it the moment it dies."""
    name = "direct (no supervisor)"

    def __init__(self, work, n):
        self.work, self.n = work, n

    def start(self):
        self.procs = {}
        for i in range(self.n):
            self.spawn(i)
        return os.getpid()

    def spawn(self, i):
        self.procs[i] = subprocess.Popen(["sh", "-c", PROGRAM.format(file=os.path.join(self.work, "starts", f"p{i}"))])

    def stop(self):
        for p in self.procs.values():
            p.kill()
            p.wait()


def measure(kind, n, kills):
    work = tempfile.mkdtemp(prefix=f"bench-{kind.__name__.lower()}-")
    os.makedirs(os.path.join(work, "starts"))
    sup = kind(work, n)
    t0 = time.time()
    sup.start()
    files = [os.path.join(work, "starts", f"p{i}") for i in range(n)]
    wait_until(lambda: all(lines(f) for f in files), what=f"{sup.name}: all running")
    up = max(float(lines(f)[0][0]) for f in files) - t0

    latencies = []
    for k in range(kills):
        i = k % n
        before = lines(files[i])
        pid = int(before[-1][1])
        t_kill = time.time()
        os.kill(pid, signal.SIGKILL)
        if isinstance(sup, Direct):
            sup.procs[i].wait()
            sup.spawn(i)
        wait_until(lambda: len(lines(files[i])) > len(before), what=f"{sup.name}: respawn of p{i}")
        latencies.append(float(lines(files[i])[-1][0]) - t_kill)
    sup.stop()
    shutil.rmtree(work, ignore_errors=True)
    return up, latencies


def idle(kind, m, seconds):
    work = tempfile.mkdtemp(prefix=f"bench-idle-{kind.__name__.lower()}-")
    os.makedirs(os.path.join(work, "starts"))
    sup = kind(work, m)
    pid = sup.start()
    files = [os.path.join(work, "starts", f"p{i}") for i in range(m)]
    wait_until(lambda: all(lines(f) for f in files), what=f"{sup.name}: all {m} running")
    time.sleep(2)  # let start-up settle before the idle window
    c0, t0 = cpu_seconds(pid), time.time()
    time.sleep(seconds)
    cpu = (cpu_seconds(pid) - c0) / (time.time() - t0) * 100
    rss = rss_mib(pid)
    sup.stop()
    shutil.rmtree(work, ignore_errors=True)
    return rss, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--programs", type=int, default=50)
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--idle-children", type=int, default=100)
    ap.add_argument("--idle-seconds", type=float, default=10)
    args = ap.parse_args()
    if not os.path.exists(STEWARD):
        sys.exit(f"build steward first: cargo build --release --locked ({STEWARD} is missing)")
    if not shutil.which("supervisord"):
        sys.exit("install supervisord first: apt-get install -y supervisor")

    rows = []
    for kind in (Direct, Steward, Supervisord):
        up, lat = measure(kind, args.programs, args.kills)
        rss, cpu = (None, None) if kind is Direct else idle(kind, args.idle_children, args.idle_seconds)
        rows.append((kind.name, up, lat, rss, cpu))
        print(f"# {kind.name}: done", file=sys.stderr)

    print(f"\n{args.programs} programs, {args.kills} kills, idle with {args.idle_children} children for {args.idle_seconds:.0f} s, on {os.cpu_count()} CPUs\n")
    print("| supervisor | up -> all running | respawn p50 | respawn p99 | RSS | idle CPU |")
    print("|---|---|---|---|---|---|")
    for name, up, lat, rss, cpu in rows:
        rss_s = "-" if rss is None else f"{rss:.1f} MiB"
        cpu_s = "-" if cpu is None else f"{cpu:.2f} % of a core"
        print(f"| {name} | {up*1000:.0f} ms | {pct(lat,50)*1000:.1f} ms | {pct(lat,99)*1000:.1f} ms | {rss_s} | {cpu_s} |")
    st, sv = rows[1], rows[2]
    print(f"\nsteward / supervisord: up {st[1]/sv[1]:.2f}x, respawn p50 {pct(st[2],50)/pct(sv[2],50):.3f}x, "
          f"p99 {pct(st[2],99)/pct(sv[2],99):.3f}x, RSS {st[3]/sv[3]:.2f}x")


if __name__ == "__main__":
    main()
