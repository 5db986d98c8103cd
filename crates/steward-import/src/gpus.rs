//! A service's GPUs, from what compose gave the container: device reservations, the
//! nvidia runtime, or the CUDA and NVIDIA variables in its environment. Those variables
//! leave the environment, since steward sets them per replica.

use crate::draft::{string, Draft, Gpus};
use crate::report::{Report, What};
use crate::yaml::{Kind, Node};
use std::collections::BTreeMap;

/// GPUs from `deploy.resources.reservations.devices`, `runtime: nvidia` and the CUDA and
/// NVIDIA variables; those variables leave `env` (steward sets them per replica), and
/// `cuda_env` says which profile replaces the rest.
pub fn gpus(
    d: &mut Draft,
    name: &str,
    svc: &Node,
    env: &mut BTreeMap<String, String>,
    report: &mut Report,
) {
    let devices = svc
        .get("deploy")
        .and_then(|x| x.get("resources"))
        .and_then(|r| r.get("reservations"))
        .and_then(|r| r.get("devices"));
    let mut found: Option<(Gpus, String)> = None;
    if let Some(Kind::Seq(list)) = devices.map(|d| &d.kind) {
        for dev in list {
            let caps: Vec<String> = match dev.get("capabilities").map(|c| &c.kind) {
                Some(Kind::Seq(c)) => c.iter().filter_map(Node::scalar).collect(),
                _ => vec![],
            };
            let nvidia = dev.get("driver").and_then(Node::scalar).as_deref() == Some("nvidia");
            if !caps.iter().any(|c| c == "gpu") && !nvidia {
                continue;
            }
            let sel = if let Some(Kind::Seq(ids)) = dev.get("device_ids").map(|i| &i.kind) {
                parse_ids(
                    &ids.iter()
                        .filter_map(Node::scalar)
                        .collect::<Vec<_>>()
                        .join(","),
                )
            } else {
                match dev.get("count").map(|c| &c.kind) {
                    Some(Kind::Int(n)) if *n > 0 => {
                        report.add(
                            Some(name),
                            "deploy.resources.reservations.devices",
                            What::Changed,
                            format!(
                                "count: {n} became the first {n} GPUs; give the indexes you mean"
                            ),
                        );
                        Some(Gpus::Indexes((0..*n as u32).collect()))
                    }
                    _ => Some(Gpus::All),
                }
            };
            if let Some(sel) = sel {
                found = Some((sel, "deploy.resources.reservations.devices".into()));
            }
        }
    }
    for k in ["CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"] {
        if found.is_none() {
            if let Some(v) = env.get(k) {
                if let Some(sel) = parse_ids(v) {
                    found = Some((sel, format!("environment {k}")));
                }
            }
        }
    }
    if found.is_none() && svc.get("runtime").and_then(Node::scalar).as_deref() == Some("nvidia") {
        found = Some((Gpus::All, "runtime: nvidia".into()));
    }
    if svc.get("runtime").is_some() {
        report.add(
            Some(name),
            "runtime",
            What::Dropped,
            "there is no container runtime: steward gives a service its GPUs with `gpus`",
        );
    }
    let mut removed = Vec::new();
    for (k, why) in [
        (
            "CUDA_VISIBLE_DEVICES",
            "steward sets it to each replica's GPU, by UUID",
        ),
        (
            "NVIDIA_VISIBLE_DEVICES",
            "the container runtime's; steward sets CUDA_VISIBLE_DEVICES",
        ),
        (
            "NVIDIA_DRIVER_CAPABILITIES",
            "the container runtime's; a host process sees the driver",
        ),
        ("CUDA_DEVICE_ORDER", "the cuda_env profile sets PCI_BUS_ID"),
    ] {
        if env.remove(k).is_some() {
            removed.push(k);
            report.add(
                Some(name),
                &format!("environment.{k}"),
                What::Dropped,
                why.to_string(),
            );
        }
    }
    if let Some(v) = env.get("CUDA_LAUNCH_BLOCKING") {
        if v == "1" {
            report.add(Some(name), "environment.CUDA_LAUNCH_BLOCKING", What::Mapped, "kept, but it serialises every CUDA call: a debugging setting that `steward doctor` warns about in production");
        }
    }
    if !removed.is_empty() {
        d.env_notes.push(format!(
            "left out: {} (steward sets the CUDA variables itself)",
            removed.join(", ")
        ));
    }
    if let Some((sel, from)) = found {
        report.add(
            Some(name),
            "gpus",
            What::Mapped,
            format!(
                "gpus = {} (from {from}); CUDA_VISIBLE_DEVICES is set to each GPU's UUID",
                sel.toml()
            ),
        );
        d.gpus = Some(sel);
        d.set("cuda_env", string("default"), Some("CUDA_DEVICE_ORDER=PCI_BUS_ID, CUDA_MODULE_LOADING=LAZY, PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (a value in env wins)".into()));
    }
}

/// `0,1`, `GPU-…`, `all`; `none`, `void` or empty: no GPU.
fn parse_ids(text: &str) -> Option<Gpus> {
    let t = text.trim();
    match t {
        "" | "none" | "void" | "NoDevFiles" => return None,
        "all" => return Some(Gpus::All),
        _ => {}
    }
    let parts: Vec<&str> = t
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if let Ok(ids) = parts
        .iter()
        .map(|p| p.parse::<u32>())
        .collect::<Result<Vec<_>, _>>()
    {
        return Some(Gpus::Indexes(ids));
    }
    Some(Gpus::Uuids(parts.iter().map(|p| p.to_string()).collect()))
}
