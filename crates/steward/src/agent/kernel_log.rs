//! The kernel's log, followed from the agent's start (one reader per agent): an OOM kill of
//! any process in a service's cgroup is an event on that service and its latest finding,
//! even when the main process lives on; each NVIDIA Xid error is an event with what the
//! code means, and a count for the GPU it names (`/metrics`).

use std::sync::Arc;
use steward_events::EventKind;
use steward_supervise::Supervisor;

/// Follows `/dev/kmsg` when it can be read; else says why not, for `ps` (and `doctor`
/// checks the same).
pub fn watch(supervisor: Arc<Supervisor>) -> Result<(), String> {
    let gpus = steward_host::GpuInventory::discover(&steward_host::Sysroot::live()).gpus;
    let ctx = supervisor.context_arc();
    // A cgroup path ending in `steward-<id>/<instance>` is one of this agent's runs.
    let ours = format!("/steward-{}/", ctx.agent_id);
    let runtime = tokio::runtime::Handle::current();
    let mut oom = steward_explain::OomReader::default();
    let followed = steward_supervise::kmsg::follow(move |msg| {
        if let Some(kill) = oom.feed(msg) {
            let Some(instance) = kill
                .cgroup
                .as_deref()
                .and_then(|c| c.split_once(ours.as_str()))
                .map(|(_, rest)| rest.trim_end_matches('/').to_string())
            else {
                return;
            };
            ctx.emit(
                Some(&instance),
                EventKind::OomKill {
                    pid: kill.pid,
                    command: kill.command.clone(),
                    message: msg.to_string(),
                    rss: kill.anon_rss,
                    limit: kill.limit,
                },
            );
            let finding = steward_explain::LiveFinding {
                id: "cgroup-oom".into(),
                category: "cgroup-oom".into(),
                line: msg.chars().take(300).collect(),
                count: 1,
                total: 1,
                fatal: false,
                fix: "raise the service's `memory`, or lower what its processes use (steward ps shows the peak)".into(),
            };
            let sup = supervisor.clone();
            runtime.spawn(async move { sup.kernel_finding(&instance, finding).await });
            return;
        }
        if !msg.contains("NVRM: Xid") {
            return;
        }
        let Some(xid) = steward_explain::xid_code_in(msg) else {
            return;
        };
        let pci = steward_explain::xid_pci_in(msg).unwrap_or("unknown");
        let matched = gpus
            .iter()
            .find(|g| steward_explain::same_pci(pci, &g.pci_bus_id));
        // The process the driver names, when it is one of a service's.
        let owner = steward_explain::xid_pid_in(msg).and_then(|pid| {
            supervisor
                .status()
                .into_iter()
                .find(|s| s.processes.contains(&pid))
                .map(|s| s.name)
        });
        ctx.emit(
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
    });
    followed.map(|_| ()).map_err(|e| {
        let why = format!(
            "/dev/kmsg cannot be read ({e}): OOM kills of children and Xid errors are not followed"
        );
        tracing::warn!("{why}");
        why
    })
}
