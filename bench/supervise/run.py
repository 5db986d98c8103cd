#!/usr/bin/env python3
"""bench/supervise: steward against supervisord (and a direct spawn) on the same programs,
at several scales.

For each number of programs N, and each supervisor in the same run:
  * up -> all N programs running (each program writes its own start time, so the number
    does not depend on how the supervisor reports state);
  * crash -> replacement running: SIGKILL one child, time until its replacement writes
    its start time (p50, p99), with restart backoff set to zero;
  * the supervisor's RSS and CPU while its N children sit idle, over an idle window.

The direct floor is this script starting each program itself (subprocess.Popen) and
starting it again the moment it is reaped.

Usage: bench/supervise/run.py [--programs 50,500,1000] [--kills 200] [--supervisord-kills 40]
                              [--idle-seconds 10] [--only steward]
Needs: a release build (cargo build --release --locked) and Debian's `supervisor` package
(apt-get install -y supervisor). Run as root for cgroups. Prints a markdown table.
"""
import argparse, os, shutil, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from measure import STEWARD, cpu_seconds, pct, rss_mib, wait_until  # noqa: E402

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
        self.proc.wait(timeout=120)


class Supervisord:
    name = "supervisord"

    def __init__(self, work, n):
        self.work = work
        self.conf = os.path.join(work, "supervisord.conf")
        with open(self.conf, "w") as f:
            f.write(f"[supervisord]\nnodaemon=true\nlogfile={work}/supervisord.log\npidfile={work}/supervisord.pid\nloglevel=warn\nminfds=4096\n")
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
        self.proc.wait(timeout=120)


class Direct:
    """The floor: Python starts each program itself and restarts it the moment it dies."""
    name = "direct (no supervisor)"

    def __init__(self, work, n):
        self.work, self.n = work, n

    def start(self):
        self.procs = {}
        for i in range(self.n):
            self.spawn(i)
        return None

    def spawn(self, i):
        self.procs[i] = subprocess.Popen(["sh", "-c", PROGRAM.format(file=os.path.join(self.work, "starts", f"p{i}"))])

    def stop(self):
        for p in self.procs.values():
            p.kill()
            p.wait()


def measure(kind, n, kills, idle_seconds):
    """Up, respawns, then the idle window, all on one set of n programs."""
    work = tempfile.mkdtemp(prefix=f"bench-{kind.__name__.lower()}-")
    os.makedirs(os.path.join(work, "starts"))
    sup = kind(work, n)
    t0 = time.time()
    pid = sup.start()
    files = [os.path.join(work, "starts", f"p{i}") for i in range(n)]
    wait_until(lambda: all(lines(f) for f in files), timeout=300, what=f"{sup.name}: all running")
    up = max(float(lines(f)[0][0]) for f in files) - t0

    latencies = []
    for k in range(kills):
        i = (k * 7919) % n  # spread over the programs
        before = lines(files[i])
        victim = int(before[-1][1])
        t_kill = time.time()
        os.kill(victim, signal.SIGKILL)
        if isinstance(sup, Direct):
            sup.procs[i].wait()
            sup.spawn(i)
        wait_until(lambda: len(lines(files[i])) > len(before), what=f"{sup.name}: respawn of p{i}")
        latencies.append(float(lines(files[i])[-1][0]) - t_kill)

    rss = cpu = None
    if pid is not None:
        time.sleep(2)  # let the last restart settle before the idle window
        c0, w0 = cpu_seconds(pid), time.time()
        time.sleep(idle_seconds)
        cpu = (cpu_seconds(pid) - c0) / (time.time() - w0) * 100
        rss = rss_mib(pid)
    sup.stop()
    shutil.rmtree(work, ignore_errors=True)
    return up, latencies, rss, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--programs", default="50,500,1000", help="comma-separated scales")
    ap.add_argument("--kills", type=int, default=200, help="respawns timed per scale")
    ap.add_argument("--supervisord-kills", type=int, default=40,
                    help="respawns timed for supervisord (each takes about a second)")
    ap.add_argument("--idle-seconds", type=float, default=10)
    ap.add_argument("--only", default="", help="comma-separated: direct,steward,supervisord")
    args = ap.parse_args()
    if not os.path.exists(STEWARD):
        sys.exit(f"build steward first: cargo build --release --locked ({STEWARD} is missing)")
    kinds = [Direct, Steward, Supervisord]
    if args.only:
        wanted = args.only.split(",")
        kinds = [k for k in kinds if k.__name__.lower() in wanted]
    if Supervisord in kinds and not shutil.which("supervisord"):
        sys.exit("install supervisord first: apt-get install -y supervisor")

    scales = [int(x) for x in args.programs.split(",")]
    rows = {}
    for n in scales:
        for kind in kinds:
            kills = args.supervisord_kills if kind is Supervisord else args.kills
            rows[(n, kind)] = measure(kind, n, kills, args.idle_seconds)
            print(f"# {n} programs, {kind.name}: done", file=sys.stderr)

    print(f"\n{args.kills} respawns per scale ({args.supervisord_kills} for supervisord), "
          f"idle window {args.idle_seconds:.0f} s, on {os.cpu_count()} CPUs\n")
    print("| programs | supervisor | up -> all running | respawn p50 | respawn p99 | RSS | idle CPU |")
    print("|---|---|---|---|---|---|---|")
    for n in scales:
        for kind in kinds:
            up, lat, rss, cpu = rows[(n, kind)]
            rss_s = "-" if rss is None else f"{rss:.1f} MiB"
            cpu_s = "-" if cpu is None else f"{cpu:.2f} % of a core"
            print(f"| {n} | {kind.name} | {up*1000:.0f} ms | {pct(lat,50)*1000:.1f} ms | "
                  f"{pct(lat,99)*1000:.1f} ms | {rss_s} | {cpu_s} |")
    print()
    for n in scales:
        parts = []
        if Direct in kinds and Steward in kinds:
            d, s = rows[(n, Direct)], rows[(n, Steward)]
            parts.append(f"up {s[0]/d[0]:.2f}x direct, respawn p50 {pct(s[1],50)/pct(d[1],50):.2f}x direct")
        if Supervisord in kinds and Steward in kinds:
            v, s = rows[(n, Supervisord)], rows[(n, Steward)]
            parts.append(f"up {s[0]/v[0]:.2f}x supervisord, RSS {s[2]/v[2]:.2f}x supervisord")
        if parts:
            print(f"{n} programs, steward: " + "; ".join(parts))
    if Steward in kinds and len(scales) > 1:
        p50 = [pct(rows[(n, Steward)][1], 50) for n in scales]
        print(f"steward respawn p50, largest scale / smallest: {p50[-1]/p50[0]:.2f}x")


if __name__ == "__main__":
    main()
