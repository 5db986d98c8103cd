//! What a process leaves behind when it ends: its children that kept running.

use crate::cgroup::ServiceCgroup;
use crate::procfs;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// Processes of a unit that outlived its main process (daemonised children, workers that
/// ignored the signal): `stop_signal`, then SIGKILL after `stop_timeout`. Found through
/// the cgroup, or without one through the `STEWARD_UNIT` marker. Returns the pids found.
pub(crate) async fn kill_strays(
    cgroup: Option<&ServiceCgroup>,
    unit: &str,
    stop_signal: Signal,
    stop_timeout: Duration,
) -> Vec<i32> {
    let list = || -> Vec<i32> {
        match cgroup {
            Some(g) => g
                .pids()
                .into_iter()
                .filter(|&p| !procfs::is_zombie(p))
                .collect(),
            None => procfs::pids_with_marker(unit),
        }
    };
    let strays = list();
    if strays.is_empty() {
        return strays;
    }
    for &p in &strays {
        let _ = kill(Pid::from_raw(p), stop_signal);
    }
    if !poll_until(stop_timeout, || list().is_empty()).await {
        for _ in 0..50 {
            let left = list();
            if left.is_empty() {
                break;
            }
            match cgroup {
                Some(g) => {
                    g.kill_all(Signal::SIGKILL);
                }
                None => {
                    for p in left {
                        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    strays
}

/// Checks `done` every 10 ms until it holds or `timeout` passes.
pub(crate) async fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
