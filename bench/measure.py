"""What every bench script measures the same way: percentiles, a process's CPU seconds and
RSS from /proc, and a wait with a deadline. Imported by bench/*/run.py."""
import os, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
STEWARD = os.path.join(ROOT, "target", "release", "steward")
CLK = os.sysconf("SC_CLK_TCK")


def wait_until(cond, timeout=60.0, what="condition", every=0.001):
    """Polls `cond` until it holds (OSError counts as not yet); exits after `timeout`."""
    deadline = time.time() + timeout
    while True:
        try:
            if cond():
                return
        except OSError:
            pass
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(every)


def pct(values, p):
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")
