#!/usr/bin/env python3
"""bench/pump: how fast a service can print while steward watches its output.

A producer writes --mb MB of ordinary log lines as fast as it can, and records how long
that took. Run three ways in the same run:
  * direct: the producer's stdout is a file (no supervisor);
  * steward, per-job: the same program as a pipeline job, whose output is pumped to its
    log but not watched (the output pump without the engine);
  * steward, service: as a service, whose output the pump also feeds line by line to
    explain's catalogue (live findings).
The pipe applies back-pressure, so the producer's rate under steward is the pump's rate.

Usage: bench/pump/run.py [--mb 1000]
Needs: a release build (cargo build --release --locked). Prints a markdown table.
"""
import argparse, os, subprocess, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STEWARD = os.path.join(ROOT, "target", "release", "steward")

PRODUCER = r'''
import os, sys, time
line = b"2026-12-04 10:00:00,123 INFO [worker-3] request handled in 12 ms path=/v1/chat/completions status=200 tokens=512\n"
chunk = line * (65536 // len(line))
total = int(sys.argv[1]) * 1000 * 1000
out = sys.stdout.buffer
t = time.perf_counter()
sent = 0
while sent < total:
    out.write(chunk)
    sent += len(chunk)
out.flush()
el = time.perf_counter() - t
with open(sys.argv[2], "w") as f:
    f.write(f"{sent} {el}\n")
'''


def wait_for(path, timeout=600):
    deadline = time.time() + timeout
    while not os.path.exists(path) or not open(path).read().strip():
        if time.time() > deadline:
            sys.exit(f"timed out waiting for {path}")
        time.sleep(0.05)
    sent, el = open(path).read().split()
    return int(sent) / float(el) / 1e6


def direct(work, mb):
    prod = os.path.join(work, "producer.py")
    res = os.path.join(work, "direct.txt")
    with open(os.path.join(work, "out.log"), "wb") as out:
        subprocess.run([sys.executable, prod, str(mb), res], stdout=out, check=True)
    return wait_for(res)


def under_steward(work, mb, kind):
    prod = os.path.join(work, "producer.py")
    res = os.path.join(work, f"{kind}.txt")
    state = os.path.join(work, f"state-{kind}")
    conf = os.path.join(work, f"{kind}.toml")
    with open(conf, "w") as f:
        f.write(f'state_dir = "{state}"\n')
        if kind == "service":
            f.write(f'[services.producer]\ncommand = ["{sys.executable}", "{prod}", "{mb}", "{res}"]\nrestart = "never"\n'
                    f'log = {{ max_size = "10GiB" }}\n')
        else:
            inputs = os.path.join(work, "in")
            os.makedirs(inputs, exist_ok=True)
            open(os.path.join(inputs, "one.txt"), "w").write("x")
            f.write(f'[pipelines.p]\ncommand = ["{sys.executable}", "{prod}", "{mb}", "{res}", "{{input}}"]\n'
                    f'inputs = ["{inputs}"]\ntimeout = "1h"\n')
    cmd = [STEWARD, "run" if kind == "job" else "up", "-f", conf] + (["--until-empty"] if kind == "job" else [])
    agent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return wait_for(res)
    finally:
        agent.terminate()
        agent.wait(timeout=120)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1000)
    a = ap.parse_args()
    if not os.path.exists(STEWARD):
        sys.exit("build steward first: cargo build --release --locked")
    with tempfile.TemporaryDirectory() as work:
        with open(os.path.join(work, "producer.py"), "w") as f:
            f.write(PRODUCER)
        d = direct(work, a.mb)
        j = under_steward(work, a.mb, "job")
        s = under_steward(work, a.mb, "service")
    print(f"\n{a.mb} MB of 110-byte log lines, as fast as the producer can write them:\n")
    print("| | MB/s | vs direct |")
    print("|---|---|---|")
    print(f"| direct to a file | {d:.0f} | 1.00x |")
    print(f"| steward, a job's output (pumped to its log, not watched) | {j:.0f} | {j / d:.2f}x |")
    print(f"| steward, a service's output (pumped and watched line by line) | {s:.0f} | {s / d:.2f}x |")


if __name__ == "__main__":
    main()
