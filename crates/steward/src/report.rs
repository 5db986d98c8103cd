//! `steward host`, `steward plan` and `steward doctor`: read the node, print one report.

use crate::cli::NodeArgs;
use anyhow::{bail, Result};
use std::process::ExitCode;
use steward_config::{ByteSize, Config, StateDir};
use steward_doctor::{DoctorInputs, Level};
use steward_host::{cpulist, HostFacts};

/// The config named by `-f`, else `steward.toml` here if there is one.
fn optional_config(node: &NodeArgs) -> Result<Option<Config>> {
    match &node.file {
        Some(f) => Ok(Some(steward_config::load(f)?)),
        None if std::path::Path::new("steward.toml").exists() => {
            Ok(Some(steward_config::load("steward.toml".as_ref())?))
        }
        None => Ok(None),
    }
}

fn state_dir(config: Option<&Config>) -> StateDir {
    config.map_or_else(
        || StateDir::new(steward_config::DEFAULT_STATE_DIR),
        |c| c.state_dir.clone(),
    )
}

pub fn host(node: &NodeArgs) -> Result<ExitCode> {
    let config = optional_config(node)?;
    let facts = crate::node::gather(node.sysroot.as_deref(), &state_dir(config.as_ref()))?;
    if node.json {
        println!("{}", serde_json::to_string_pretty(&facts)?);
    } else {
        print_host(&facts);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_host(f: &HostFacts) {
    let row = |k: &str, v: String| println!("{k:<11} {v}");
    if f.root != "/" {
        row("root", f.root.clone());
    }
    if let Some(m) = &f.memory {
        row(
            "memory",
            format!(
                "MemTotal {}, available {}, swap {}",
                ByteSize(m.total).both(),
                ByteSize(m.available).both(),
                if m.swap_total == 0 {
                    "none".into()
                } else {
                    ByteSize(m.swap_total).both()
                }
            ),
        );
    }
    if let Some(c) = &f.cpu {
        row(
            "cpus",
            format!(
                "{} online ({}), allowed {}; {} cores x {} thread(s); {} NUMA node(s); {} L3 group(s)",
                c.online.len(),
                cpulist::format(&c.online),
                cpulist::format(&c.allowed),
                c.cores.len(),
                c.threads_per_core(),
                c.numa_nodes.len(),
                c.l3_groups.len()
            ),
        );
        for (n, cpus) in &c.numa_nodes {
            row("numa", format!("node{n}: {}", cpulist::format(cpus)));
        }
        for (i, g) in c.l3_groups.iter().enumerate() {
            row("l3", format!("group {i}: {}", cpulist::format(g)));
        }
    }
    if f.gpus.gpus.is_empty() {
        row(
            "gpus",
            format!(
                "none ({})",
                f.gpus.absent_because.as_deref().unwrap_or("none found")
            ),
        );
    } else {
        row(
            "gpus",
            format!(
                "{} via {}, driver {}",
                f.gpus.gpus.len(),
                f.gpus.source,
                f.gpus.driver_version.as_deref().unwrap_or("?")
            ),
        );
        for g in &f.gpus.gpus {
            row(
                "gpu",
                format!(
                    "{} {} {} bus {}: {} total, {} used, {} process(es); persistence {}; ECC uncorrected {}; NUMA {}; local CPUs {}",
                    g.index,
                    g.name,
                    g.uuid,
                    g.pci_bus_id,
                    ByteSize(g.memory_total).binary(),
                    ByteSize(g.memory_used).binary(),
                    g.processes.len(),
                    g.persistence_mode.map_or("?", |p| if p { "on" } else { "off" }),
                    g.ecc_uncorrected_volatile.map_or("?".into(), |e| e.to_string()),
                    g.numa_node.map_or("-".into(), |n| n.to_string()),
                    g.local_cpus.as_ref().map_or("-".into(), |c| cpulist::format(c)),
                ),
            );
        }
    }
    let cg = &f.cgroups;
    row(
        "cgroups",
        format!(
            "{} {} [{}]: {}",
            cg.version,
            cg.own_group.as_deref().unwrap_or("-"),
            cg.controllers.join(" "),
            if cg.hard_limits {
                "hard limits possible".to_string()
            } else {
                format!("soft limits only: {}", cg.why_not.as_deref().unwrap_or(""))
            }
        ),
    );
    let core = &f.core_dumps;
    row(
        "core dumps",
        format!(
            "{} (limit {}), pattern {:?}",
            if core.enabled() { "on" } else { "off" },
            core.limit.as_deref().unwrap_or("?"),
            core.pattern.as_deref().unwrap_or("?")
        ),
    );
    if let Some(d) = f.disk {
        row(
            "disk",
            format!(
                "{} free of {}",
                ByteSize(d.free).both(),
                ByteSize(d.total).both()
            ),
        );
    }
    if let Some(r) = &f.resolvers {
        row(
            "dns",
            if r.is_empty() {
                "no nameserver".into()
            } else {
                format!("nameservers {}", r.join(", "))
            },
        );
    }
    row(
        "zombies",
        if f.zombies.is_empty() {
            "none".into()
        } else {
            format!(
                "{}: {}",
                f.zombies.len(),
                f.zombies
                    .iter()
                    .map(|z| format!("{} (parent {} {})", z.pid, z.ppid, z.parent))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    );
    for m in &f.missing {
        row("missing", m.clone());
    }
}

pub fn plan(node: &NodeArgs) -> Result<ExitCode> {
    let Some(config) = optional_config(node)? else {
        bail!("`steward plan` needs a config: pass -f FILE, or run it where steward.toml is");
    };
    let facts = crate::node::gather(node.sysroot.as_deref(), &config.state_dir)?;
    let mut plan = crate::node::plan(&config, &facts)?;
    plan.admission
        .warnings
        .extend(gpu_memory_over_plan(&config));
    if node.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", steward_plan::render(&plan));
    }
    Ok(if plan.admission.admitted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Running instances (asked of the agent, when one runs) that hold more GPU memory than
/// their service's `gpu_memory`: the plan counts what the config says, not what they use.
fn gpu_memory_over_plan(config: &Config) -> Vec<String> {
    let Ok(mut client) = steward_api::Client::connect(&config.state_dir) else {
        return Vec::new();
    };
    let Ok(Some(ps)) = client.request(&steward_api::Request::Ps).map(|r| r.ps) else {
        return Vec::new();
    };
    ps.services
        .iter()
        .filter_map(|s| {
            let planned = config.services.get(&s.service)?.gpu_memory?.bytes();
            let held = s.gpu_memory_used.filter(|&h| h > planned)?;
            Some(format!(
                "{} holds {} of GPU memory now, more than its gpu_memory of {}: raise gpu_memory so the plan counts what it uses",
                s.name,
                ByteSize(held).both(),
                ByteSize(planned).both()
            ))
        })
        .collect()
}

pub fn doctor(node: &NodeArgs, no_dns: bool) -> Result<ExitCode> {
    let config = optional_config(node)?;
    let facts = crate::node::gather(node.sysroot.as_deref(), &state_dir(config.as_ref()))?;
    let plan = match &config {
        Some(c) => Some(crate::node::plan(c, &facts)?),
        None => None,
    };
    let dns =
        (!no_dns).then(|| steward_host::probe_resolvers(facts.resolvers.as_deref().unwrap_or(&[])));
    let own_pids = config
        .as_ref()
        .map(|c| own_pids(&c.state_dir))
        .unwrap_or_default();
    let checks = steward_doctor::run(&DoctorInputs {
        facts: &facts,
        config: config.as_ref(),
        plan: plan.as_ref(),
        dns: dns.as_deref(),
        own_pids: &own_pids,
    });
    if node.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        for c in &checks {
            let fix = if c.fix.is_empty() {
                String::new()
            } else {
                format!("\n      fix: {}", c.fix)
            };
            println!("{:<4}  {:<18} {}{fix}", c.level.to_string(), c.name, c.seen);
        }
    }
    Ok(if checks.iter().any(|c| c.level == Level::Fail) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Pids of the processes a running agent on this state dir supervises, and their
/// descendants, so their GPU memory is not reported as someone else's.
fn own_pids(state_dir: &StateDir) -> Vec<u32> {
    let Ok(mut client) = steward_api::Client::connect(state_dir) else {
        return Vec::new();
    };
    let Ok(resp) = client.request(&steward_api::Request::Ps) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = resp
        .ps
        .map(|p| p.services.iter().filter_map(|s| s.pid).collect())
        .unwrap_or_default();
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                    Some((pid, steward_supervise::procfs::ppid(pid as i32)? as u32))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut i = 0;
    while i < pids.len() {
        let p = pids[i];
        pids.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    pids
}
