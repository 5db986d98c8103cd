#!/usr/bin/env python3
"""bench/plan: `steward plan` on a 1,000-replica config, against `steward config check` on
the same file (parsing alone, the floor every command pays) in the same run.

The host is a synthetic 2-socket node (64 cores, 128 CPUs) with 4 GPUs, written as a
sysroot tree. A quarter of the replicas ask for a pinned core each, more than the host
has, so placement runs out and admission refuses: the slowest path. Prints p50 and p99
of wall time over N runs of the whole command.

Usage: bench/plan/run.py [--replicas 1000] [--runs 30]
Needs a release build: cargo build --release --locked.
"""
import argparse, os, shutil, subprocess, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STEWARD = os.path.join(ROOT, "target", "release", "steward")


def fmt(cpus):
    return ",".join(str(c) for c in cpus)


def write_host(root, sockets=2, cores_per_socket=32, gpus=4):
    cores = sockets * cores_per_socket
    def w(rel, text):
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        open(p, "w").write(text + "\n")
    w("sys/devices/system/cpu/online", f"0-{2 * cores - 1}")
    w("proc/self/status", f"Cpus_allowed_list:\t0-{2 * cores - 1}")
    w("proc/meminfo", "MemTotal: 2147483648 kB\nMemAvailable: 2000000000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB")
    for cpu in range(2 * cores):
        core = cpu % cores
        sock = core // cores_per_socket
        base = f"sys/devices/system/cpu/cpu{cpu}"
        w(f"{base}/topology/thread_siblings_list", fmt([core, core + cores]))
        w(f"{base}/cache/index3/level", "3")
        lo = sock * cores_per_socket
        w(f"{base}/cache/index3/shared_cpu_list", f"{lo}-{lo + cores_per_socket - 1},{lo + cores}-{lo + cores + cores_per_socket - 1}")
    for sock in range(sockets):
        lo = sock * cores_per_socket
        w(f"sys/devices/system/node/node{sock}/cpulist", f"{lo}-{lo + cores_per_socket - 1},{lo + cores}-{lo + cores + cores_per_socket - 1}")
    xml = ["<nvidia_smi_log><driver_version>580</driver_version>"]
    for i in range(gpus):
        bus = f"{0x18 + i * 0x20:02x}"
        w(f"sys/bus/pci/devices/0000:{bus}:00.0/numa_node", str(i * sockets // gpus))
        xml.append(f'<gpu id="00000000:{bus.upper()}:00.0"><product_name>B</product_name><uuid>GPU-{i}</uuid><minor_number>{i}</minor_number>'
                   "<fb_memory_usage><total>81920 MiB</total><used>0 MiB</used><free>81920 MiB</free></fb_memory_usage></gpu>")
    xml.append("</nvidia_smi_log>")
    open(os.path.join(root, "nvidia-smi-q.xml"), "w").write("".join(xml))


def timed(cmd, runs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicas", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=30)
    a = ap.parse_args()
    if not os.path.exists(STEWARD):
        sys.exit(f"build steward first: cargo build --release --locked ({STEWARD} is missing)")
    work = tempfile.mkdtemp(prefix="bench-plan-")
    write_host(os.path.join(work, "root"))
    pinned = a.replicas // 4
    cfg = os.path.join(work, "steward.toml")
    with open(cfg, "w") as f:
        f.write(f'[services.pinned]\ncommand = ["sleep", "1"]\ngpus = "all"\nreplicas = {pinned}\ncpus_per_replica = 1\nmemory = "1GiB"\ngpu_memory = "256MiB"\n')
        f.write(f'[services.free]\ncommand = ["sleep", "1"]\ngpus = "all"\nreplicas = {a.replicas - pinned}\nmemory = "512MiB"\n')
    root = os.path.join(work, "root")
    check = timed([STEWARD, "config", "check", cfg], a.runs)
    plan = timed([STEWARD, "plan", "-f", cfg, "--sysroot", root, "--json"], a.runs)
    print(f"\n{a.replicas} replicas ({pinned} pinned to a core each) on a 2-socket, 128-CPU, 4-GPU synthetic host; {a.runs} runs\n")
    print("| command | p50 | p99 |")
    print("|---|---|---|")
    print(f"| steward config check (parse only) | {check[0]*1000:.1f} ms | {check[1]*1000:.1f} ms |")
    print(f"| steward plan --json | {plan[0]*1000:.1f} ms | {plan[1]*1000:.1f} ms |")
    print(f"\nplan over parse: {(plan[0]-check[0])*1000:.1f} ms at p50 ({plan[0]/check[0]:.2f}x)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
