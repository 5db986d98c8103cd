#!/usr/bin/env python3
"""bench/startup: time to all-healthy for 16 replicas on 2 (fake) GPUs.

Each replica turns healthy 300 ms after it starts, like a process creating its CUDA
context. Three ways to start them, in the same run:
  * serialized per GPU (steward's default with `gpus`): 8 one after another on each GPU,
    the two GPUs in parallel. Ideal: 8 x 0.3 s = 2.4 s.
  * fully parallel (no `gpus`): all 16 at once. Ideal: 0.3 s, but on a real GPU concurrent
    context creation is slower and is what segfaults libcuda.
  * fully serial (one GPU lock for all, like a hand-written depends_on chain). Ideal: 4.8 s.

Times come from steward's own events.jsonl: agent_started to the last `healthy`.
Usage: bench/startup/run.py [--replicas 16] [--ready-after 0.3] [--runs 3]
Needs a release build: cargo build --release --locked.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time
from datetime import datetime

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STEWARD = os.path.join(ROOT, "target", "release", "steward")


def ts(event):
    return datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()


def run(mode, replicas, ready_after):
    work = tempfile.mkdtemp(prefix=f"bench-startup-{mode}-")
    gpus = {"per-gpu": 'gpus = "all"\n', "parallel": "", "serial": 'gpus = "all"\n'}[mode]
    fake = {"per-gpu": "2", "parallel": "2", "serial": "1"}[mode]
    with open(os.path.join(work, "steward.toml"), "w") as f:
        f.write(
            "[services.worker]\n"
            f'command = "sleep {ready_after}; touch ready-$STEWARD_SERVICE; exec sleep 1000000"\n'
            "shell = true\n"
            f"replicas = {replicas}\n{gpus}"
            'health = { exec = ["sh", "-c", "test -f ready-$STEWARD_SERVICE"], interval = "5s", start_interval = "20ms" }\n'
        )
    env = {**os.environ, "STEWARD_FAKE_GPUS": fake, "STEWARD_LOG": "warn"}
    proc = subprocess.Popen([STEWARD, "up", "-f", os.path.join(work, "steward.toml")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events_path = os.path.join(work, ".steward", "events.jsonl")
    deadline = time.time() + 120
    while True:
        events = []
        if os.path.exists(events_path):
            with open(events_path) as f:
                events = [json.loads(l) for l in f if l.strip()]
        healthy = [e for e in events if e.get("event") == "health" and e.get("state") == "healthy"]
        if len(healthy) >= replicas:
            break
        if time.time() > deadline or proc.poll() is not None:
            raise SystemExit(f"{mode}: not all healthy")
        time.sleep(0.05)
    start = ts(next(e for e in events if e["event"] == "agent_started"))
    total = max(ts(e) for e in healthy) - start
    subprocess.run([STEWARD, "down", "-f", os.path.join(work, "steward.toml")], capture_output=True)
    proc.wait(timeout=60)
    shutil.rmtree(work, ignore_errors=True)
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicas", type=int, default=16)
    ap.add_argument("--ready-after", type=float, default=0.3)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    if not os.path.exists(STEWARD):
        sys.exit(f"build steward first: cargo build --release --locked ({STEWARD} is missing)")
    ideal = {"per-gpu": a.replicas / 2 * a.ready_after, "parallel": a.ready_after, "serial": a.replicas * a.ready_after}
    label = {"per-gpu": "serialized per GPU (2 GPUs)", "parallel": "fully parallel", "serial": "fully serial (1 lock)"}
    print(f"\n{a.replicas} replicas, healthy {a.ready_after*1000:.0f} ms after start, median of {a.runs} runs, {os.cpu_count()} CPUs\n")
    print("| start order | time to all healthy | ideal | overhead |")
    print("|---|---|---|---|")
    for mode in ("per-gpu", "parallel", "serial"):
        t = statistics.median(run(mode, a.replicas, a.ready_after) for _ in range(a.runs))
        print(f"| {label[mode]} | {t:.2f} s | {ideal[mode]:.2f} s | {(t - ideal[mode]) * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
