//! Reads of `/proc` that the supervisor needs when no cgroup can do the job: finding a
//! service's processes by the marker in their environment, their RSS, and zombies.

use std::fs;

/// The environment entry every process of a service carries (and its children inherit),
/// so that its processes can be found even after they leave its process group.
pub const MARKER_VAR: &str = "STEWARD_UNIT";

fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Processes whose environment holds exactly `MARKER_VAR=<unit>`.
pub fn pids_with_marker(unit: &str) -> Vec<i32> {
    let wanted = format!("{MARKER_VAR}={unit}");
    all_pids()
        .into_iter()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == wanted.as_bytes()))
        })
        .collect()
}

/// Processes whose `MARKER_VAR` starts with `prefix` (every service of one agent).
pub fn pids_with_marker_prefix(prefix: &str) -> Vec<i32> {
    let wanted = format!("{MARKER_VAR}={prefix}");
    all_pids()
        .into_iter()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|&b| b == 0)
                    .any(|kv| kv.starts_with(wanted.as_bytes()))
            })
        })
        .collect()
}

/// The process state letter from `/proc/PID/stat` (`R`, `S`, `Z`, ...).
pub fn state(pid: i32) -> Option<char> {
    let stat = crate::pseudo_file::read(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses; the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Parent pid from `/proc/PID/stat`.
pub fn ppid(pid: i32) -> Option<i32> {
    let stat = crate::pseudo_file::read(format!("/proc/{pid}/stat"))?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub fn is_zombie(pid: i32) -> bool {
    state(pid) == Some('Z')
}

/// Resident memory of one process, in bytes.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let statm = crate::pseudo_file::read(format!("/proc/{pid}/statm"))?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// CPU time one process used, user and system, with that of its children it waited for,
/// in seconds.
pub fn cpu_seconds(pid: i32) -> Option<f64> {
    let stat = crate::pseudo_file::read(format!("/proc/{pid}/stat"))?;
    // After the name: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..15)?
        .iter()
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks as f64 / if hz > 0 { hz as f64 } else { 100.0 })
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// `(pid, ppid)` of every zombie on the host.
pub fn zombies() -> Vec<(i32, i32)> {
    all_pids()
        .into_iter()
        .filter(|&p| is_zombie(p))
        .map(|p| (p, ppid(p).unwrap_or(0)))
        .collect()
}
