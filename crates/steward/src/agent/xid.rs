//! Xid errors: the NVIDIA driver's GPU faults, read from the kernel log as they are
//! written, each an event (on the timeline, with what the code means) and a count in
//! `/metrics` for the GPU it names.

use std::sync::Arc;
use steward_events::EventKind;
use steward_supervise::SupervisorContext;

/// Follows the kernel log for Xid lines, when it can be read.
pub fn watch(ctx: Arc<SupervisorContext>) {
    let gpus = steward_host::GpuInventory::discover(&steward_host::Sysroot::live()).gpus;
    let followed = steward_supervise::kmsg::follow(move |msg| {
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
        ctx.emit(
            None,
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
    if followed.is_none() {
        tracing::debug!("the kernel log cannot be read: Xid errors are not counted");
    }
}
