//! The kernel's OOM report, read from its log line by line. One OOM kill writes, in order:
//! `memory: usage NkB, limit NkB, …` (for a cgroup), then
//! `oom-kill:constraint=…,oom_memcg=/…,task_memcg=/…,task=CMD,pid=PID,uid=…`, then
//! `… Killed process PID (CMD) total-vm:…kB, anon-rss:NkB, …`. [`OomReader`] puts them
//! together into one [`OomKill`], attributed by the victim's cgroup path.

use regex::Regex;
use std::sync::OnceLock;

/// One process the kernel's OOM killer killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomKill {
    pub pid: u32,
    pub command: String,
    /// The victim's cgroup, as the kernel names it (`/…/steward-<id>/<instance>`).
    pub cgroup: Option<String>,
    pub anon_rss: Option<u64>,
    /// The cgroup's limit and usage at the kill, when the kernel printed them.
    pub limit: Option<u64>,
    pub usage: Option<u64>,
}

#[derive(Default)]
pub struct OomReader {
    usage: Option<(u64, u64)>,
    pending: Option<(u32, String, String)>,
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("valid"))
}

impl OomReader {
    /// Feeds one kernel message; returns the kill once its last line is read.
    pub fn feed(&mut self, line: &str) -> Option<OomKill> {
        static USAGE: OnceLock<Regex> = OnceLock::new();
        static KILL: OnceLock<Regex> = OnceLock::new();
        static VICTIM: OnceLock<Regex> = OnceLock::new();
        if let Some(c) = re(&USAGE, r"\bmemory: usage (\d+)kB, limit (\d+)kB").captures(line) {
            self.usage = Some((c[1].parse().ok()?, c[2].parse().ok()?));
            return None;
        }
        if let Some(c) = re(
            &KILL,
            r"oom-kill:.*task_memcg=([^,]*),task=([^,]*),pid=(\d+)",
        )
        .captures(line)
        {
            self.pending = Some((c[3].parse().ok()?, c[2].to_string(), c[1].to_string()));
            return None;
        }
        let c = re(
            &VICTIM,
            r"Killed process (\d+) \((.*?)\)(?: total-vm|,|$)(?:.*anon-rss:(\d+)kB)?",
        )
        .captures(line)?;
        let pid: u32 = c[1].parse().ok()?;
        let cgroup = match self.pending.take() {
            Some((p, _, memcg)) if p == pid => Some(memcg),
            _ => None,
        };
        let usage = self.usage.take();
        Some(OomKill {
            pid,
            command: c[2].to_string(),
            cgroup,
            anon_rss: c
                .get(3)
                .and_then(|m| m.as_str().parse::<u64>().ok())
                .map(|k| k * 1024),
            limit: usage.map(|u| u.1 * 1024),
            usage: usage.map(|u| u.0 * 1024),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_three_lines_make_one_kill_with_its_cgroup() {
        // As this build machine's kernel wrote them for a python child of a shell service.
        let lines = [
            "memory: usage 65536kB, limit 65536kB, failcnt 0",
            "memory+swap: usage 65536kB, limit 65536kB, failcnt 0",
            "Memory cgroup stats for /process_api/72753a84/steward-c824f75acbae/shelly:",
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/process_api/72753a84/steward-c824f75acbae/shelly,task_memcg=/process_api/72753a84/steward-c824f75acbae/shelly,task=python3,pid=12484,uid=0",
            "Memory cgroup out of memory: Killed process 12484 (python3) total-vm:323768kB, anon-rss:64896kB, file-rss:6612kB, shmem-rss:0kB, UID:0 pgtables:188kB oom_score_adj:500",
        ];
        let mut r = OomReader::default();
        let got: Vec<OomKill> = lines.iter().filter_map(|l| r.feed(l)).collect();
        assert_eq!(
            got,
            vec![OomKill {
                pid: 12484,
                command: "python3".into(),
                cgroup: Some("/process_api/72753a84/steward-c824f75acbae/shelly".into()),
                anon_rss: Some(64896 * 1024),
                limit: Some(64 << 20),
                usage: Some(64 << 20),
            }]
        );
    }

    #[test]
    fn a_host_oom_without_a_cgroup_line_still_names_its_victim() {
        let mut r = OomReader::default();
        let k = r.feed("Out of memory: Killed process 999 (vllm) total-vm:1kB, anon-rss:2048kB, file-rss:0kB").unwrap();
        assert_eq!(
            (k.pid, k.command.as_str(), k.cgroup, k.anon_rss),
            (999, "vllm", None, Some(2 << 20))
        );
    }
}

/// A segfault the kernel logged: `python3[12345]: segfault at 10 ip … error 4 in
/// libcuda.so.535.104.05[7f…+…]`: the command, its pid, and the library it died in.
pub fn segfault_in(line: &str) -> Option<(String, u32, String)> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let c = re(&RE, r"(\S+)\[(\d+)\]: segfault at .* in ([^\[\s]+)\[").captures(line)?;
    Some((c[1].to_string(), c[2].parse().ok()?, c[3].to_string()))
}

#[cfg(test)]
mod segfault_tests {
    #[test]
    fn a_segfault_line_names_its_process_and_library() {
        let l = "python3[4173]: segfault at 10 ip 00007f3a1c2b4d5e sp 00007ffd7c1e2a40 error 4 in libcuda.so.535.104.05[7f3a1b000000+1e00000]";
        assert_eq!(
            super::segfault_in(l),
            Some(("python3".into(), 4173, "libcuda.so.535.104.05".into()))
        );
        assert_eq!(super::segfault_in("python3: exited"), None);
    }
}
