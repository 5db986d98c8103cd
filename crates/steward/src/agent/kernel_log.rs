//! The kernel's log, followed from the agent's start (one reader per agent): an OOM kill of
//! any process in a service's cgroup, and a segfault in libcuda of one of its processes,
//! are events on that service and its latest finding, even when the main process lives
//! on; each NVIDIA Xid error (by number, or said in words) is an event with what the code
//! means, the service's when it names one of its pids, and a count for its GPU.

use std::sync::Arc;
use steward_events::EventKind;
use steward_explain::LiveFinding;
use steward_supervise::Supervisor;

/// What the follower needs to tell who a line is about.
struct Reader {
    supervisor: Arc<Supervisor>,
    gpus: Vec<steward_host::Gpu>,
    /// A cgroup path holding `/steward-<id>/` is one of this agent's runs.
    ours: String,
    runtime: tokio::runtime::Handle,
    oom: steward_explain::OomReader,
}

/// Follows `/dev/kmsg` when it can be read; else says why not, for `ps` (and `doctor`
/// checks the same).
pub fn watch(supervisor: Arc<Supervisor>) -> Result<(), String> {
    let mut reader = Reader {
        gpus: steward_host::GpuInventory::discover(&steward_host::Sysroot::live()).gpus,
        ours: format!("/steward-{}/", supervisor.context().agent_id),
        runtime: tokio::runtime::Handle::current(),
        oom: steward_explain::OomReader::default(),
        supervisor,
    };
    let kernel = reader.supervisor.context().kernel.clone();
    kernel.follow(move |msg| reader.line(msg)).map_err(|e| {
        let why = format!(
            "/dev/kmsg cannot be read ({e}): OOM kills of children and Xid errors are not followed"
        );
        tracing::warn!("{why}");
        why
    })
}

impl Reader {
    fn line(&mut self, msg: &str) {
        if let Some(kill) = self.oom.feed(msg) {
            if let Some(instance) = kill
                .cgroup
                .as_deref()
                .and_then(|c| self.instance_of_cgroup(c))
            {
                self.supervisor.context().emit(
                    Some(&instance),
                    EventKind::OomKill {
                        pid: kill.pid,
                        command: kill.command.clone(),
                        message: msg.to_string(),
                        rss: kill.anon_rss,
                        limit: kill.limit,
                    },
                );
                self.show(&instance, "cgroup-oom", msg, "raise the service's `memory`, or lower what its processes use (steward ps shows the peak)");
            }
            return;
        }
        if let Some((_, pid, lib)) = steward_explain::segfault_in(msg) {
            if lib.contains("libcuda") {
                if let Some(instance) = self.instance_of_pid(pid) {
                    let fix = "a crash inside the NVIDIA driver's library: match the driver to the CUDA build, and check `steward doctor` for the GPU's state";
                    self.supervisor.context().emit(
                        Some(&instance),
                        EventKind::Finding {
                            id: "libcuda-segfault".into(),
                            category: "libcuda-segfault".into(),
                            line: format!("kernel: {msg}"),
                            count: 1,
                            total: 1,
                            fatal: false,
                            explain: fix.into(),
                        },
                    );
                    self.show(&instance, "libcuda-segfault", msg, fix);
                }
            }
            return;
        }
        if msg.contains("NVRM:") {
            self.xid(msg);
        }
    }

    fn xid(&self, msg: &str) {
        let Some(xid) =
            steward_explain::xid_code_in(msg).or_else(|| steward_explain::xid_code_from_words(msg))
        else {
            return;
        };
        let pci = steward_explain::xid_pci_in(msg).unwrap_or("unknown");
        let matched = self
            .gpus
            .iter()
            .find(|g| steward_explain::same_pci(pci, &g.pci_bus_id));
        let owner = steward_explain::xid_pid_in(msg).and_then(|pid| self.instance_of_pid(pid));
        self.supervisor.context().emit(
            owner.as_deref(),
            EventKind::GpuXid {
                xid,
                gpu: matched.map_or_else(|| format!("PCI:{pci}"), |g| g.uuid.clone()),
                index: matched.map(|g| g.index),
                message: msg.to_string(),
                explain: steward_explain::xid_meaning(xid)
                    .map(|(what, fix)| format!("xid-{xid}: {what} — {fix}")),
            },
        );
    }

    /// `/…/steward-<id>/<instance>` → the instance.
    fn instance_of_cgroup(&self, cgroup: &str) -> Option<String> {
        let (_, rest) = cgroup.split_once(self.ours.as_str())?;
        Some(rest.trim_end_matches('/').to_string())
    }

    /// The instance whose processes include `pid`: as it runs now, or (a process on its
    /// way out) by the cgroup `/proc` still shows for it.
    fn instance_of_pid(&self, pid: u32) -> Option<String> {
        if let Some(s) = self
            .supervisor
            .status()
            .into_iter()
            .find(|s| s.processes.contains(&pid))
        {
            return Some(s.name);
        }
        let groups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        groups
            .lines()
            .find_map(|l| self.instance_of_cgroup(l.rsplit(':').next()?))
    }

    /// The line as the instance's latest finding, in `ps`.
    fn show(&self, instance: &str, category: &str, msg: &str, fix: &str) {
        let finding = LiveFinding {
            id: category.into(),
            category: category.into(),
            line: msg.chars().take(300).collect(),
            count: 1,
            total: 1,
            fatal: false,
            fix: fix.into(),
        };
        let (sup, instance) = (self.supervisor.clone(), instance.to_string());
        self.runtime
            .spawn(async move { sup.kernel_finding(&instance, finding).await });
    }
}
