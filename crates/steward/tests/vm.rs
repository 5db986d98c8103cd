//! The VM tier: steward on a real cgroup v2 kernel (Debian's, booted in QEMU by
//! `tests/vm/boot.sh`), where this build machine has cgroup v1. Two boots: one runs the
//! cgroup scenarios (`tests/vm/cgroup-v2.sh`: the root group, a delegated subtree, a shared
//! group), the other makes steward the machine's PID 1 (`tests/vm/pid1.sh`). Each scenario
//! prints `RESULT name ok` on the serial console; a missing one, a kernel panic or a
//! timeout fails the test with the console's tail. A third boots a Debian root file system
//! with a real systemd and `deploy/systemd/steward.service` (`tests/vm/systemd.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn vm_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm")
}

/// Boots `script` as /init with steward in /bin; returns the console.
fn boot(script: &str) -> String {
    let out = Command::new(vm_dir().join("boot.sh"))
        .args(["-t", "240"])
        .arg(vm_dir().join(script))
        .arg(env!("CARGO_BIN_EXE_steward"))
        .output()
        .expect("run tests/vm/boot.sh");
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.code() != Some(3),
        "the VM tier needs qemu-system-x86, linux-image-amd64 and busybox-static (scripts/test installs them): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    console
}

fn tail(console: &str) -> String {
    let lines: Vec<&str> = console.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Every `want`ed scenario reported ok, and the run reached its end.
fn check(console: &str, want: &[&str]) {
    assert!(
        !console.contains("Kernel panic"),
        "the kernel panicked:\n{}",
        tail(console)
    );
    assert!(
        console.contains("RESULTS-DONE"),
        "the scenarios did not finish (a timeout or a hang):\n{}",
        tail(console)
    );
    let results: Vec<&str> = console
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .collect();
    let failed: Vec<&&str> = results.iter().filter(|r| !r.ends_with(" ok")).collect();
    assert!(failed.is_empty(), "failed: {failed:?}\n{}", tail(console));
    for w in want {
        assert!(
            results.iter().any(|r| *r == format!("{w} ok")),
            "{w} did not report:\n{}",
            tail(console)
        );
    }
}

#[test]
fn on_a_real_cgroup_v2_kernel_and_as_the_machines_pid_1() {
    let t = std::time::Instant::now();
    let console = boot("cgroup-v2.sh");
    check(
        &console,
        &[
            "root-uses-v2",
            "root-moved-only-itself",
            "root-no-debris",
            "deleg-uses-v2",
            "oom-kill-limit-and-peak",
            "oom-kill-explained-by-the-kernel",
            "oom-group-kills-the-whole-service",
            "swap-max-read-back",
            "pids-max-read-back",
            "cpuset-read-back",
            "oom-group-set",
            "daemon-running",
            "daemon-gone-after-down",
            "deleg-no-debris",
            "deleg-controllers-given-back",
            "ebusy-falls-back-to-soft-limits",
            "ebusy-neighbour-not-moved",
            "ebusy-no-debris",
        ],
    );
    let console = boot("pid1.sh");
    check(&console, &["orphans-reaped", "sighup-forwarded"]);
    assert!(
        console.contains("reboot: Power down"),
        "steward as PID 1 did not power the machine off:\n{}",
        tail(&console)
    );
    eprintln!("the VM tier took {:.0?}", t.elapsed());
}

#[test]
fn under_a_real_systemd_with_the_shipped_unit() {
    let t = std::time::Instant::now();
    let out = Command::new(vm_dir().join("systemd.sh"))
        .arg(env!("CARGO_BIN_EXE_steward"))
        .output()
        .expect("run tests/vm/systemd.sh");
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the systemd checks failed ({}):\n{console}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "start-waits-for-ready",
        "delegate-gives-cgroup-v2",
        "memory-max-applied",
        "reload-starts-a-new-service",
        "stop-leaves-no-process",
        "stop-leaves-no-group",
        "journal-has-stewards-lines",
    ] {
        assert!(
            console.contains(&format!("RESULT {name} ok")),
            "{name}:\n{console}"
        );
    }
    eprintln!("the systemd boot took {:.0?}", t.elapsed());
}
