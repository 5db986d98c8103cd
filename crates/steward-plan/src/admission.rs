//! Admission: does the plan fit the host? Memory limits plus the reserve under MemTotal,
//! GPU memory per GPU under its total, pinned CPUs that exist and are allowed. Every size is
//! shown in GiB and GB, because the difference (7%) is what hangs a node sized to the last GiB.

use crate::Instance;
use serde::Serialize;
use std::collections::BTreeMap;
use steward_config::{ByteSize, Config};
use steward_host::{CpuTopology, GpuInventory, MemInfo};

/// One reason the plan does not fit, written for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The config key at fault, e.g. `services.train.memory`.
    pub key: String,
    pub message: String,
}

/// One line of the memory account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemoryLine {
    pub what: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Admission {
    pub admitted: bool,
    /// Limits by service, the reserve, the total asked, MemTotal, and the headroom or
    /// the missing amount.
    pub memory: Vec<MemoryLine>,
    pub refusals: Vec<Refusal>,
    pub warnings: Vec<String>,
}

/// The default reserve: the larger of 2 GiB and 5% of MemTotal.
pub fn default_reserve(mem_total: u64) -> u64 {
    (2u64 << 30).max(mem_total / 20)
}

pub struct AdmissionInputs<'a> {
    pub mem: Option<&'a MemInfo>,
    pub cpu: Option<&'a CpuTopology>,
    pub gpus: &'a GpuInventory,
    /// The highest memory use steward has seen per service on earlier runs.
    pub observed_peaks: &'a BTreeMap<String, u64>,
}

pub fn admit(config: &Config, instances: &[Instance], input: &AdmissionInputs) -> Admission {
    let mut refusals = Vec::new();
    let mut warnings = Vec::new();
    let mut memory = Vec::new();

    // Sums in u128: limits of up to 1 EiB times 1024 replicas times any number of services
    // never overflow, and a total past u64 is refused like any other that does not fit.
    let mut by_service: BTreeMap<&str, (u32, u128)> = BTreeMap::new();
    for i in instances {
        if let Some(m) = i.memory {
            let e = by_service.entry(&i.service).or_default();
            e.0 += 1;
            e.1 += u128::from(m);
        }
    }
    let asked: u128 = by_service.values().map(|v| v.1).sum();
    for (svc, (n, total)) in &by_service {
        memory.push(MemoryLine {
            what: format!(
                "{svc} ({n} x {})",
                ByteSize(clamp(total / u128::from(*n))).binary()
            ),
            bytes: clamp(*total),
        });
    }
    match input.mem {
        None => warnings
            .push("memory limits not checked: this host's MemTotal could not be read".into()),
        Some(mem) => {
            let (reserve, why) = match config.reserve_memory {
                Some(r) => (r.bytes(), "reserve_memory".to_string()),
                None => (
                    default_reserve(mem.total),
                    "reserve (max of 2 GiB and 5% of MemTotal)".to_string(),
                ),
            };
            memory.push(MemoryLine {
                what: why,
                bytes: reserve,
            });
            let total = asked + u128::from(reserve);
            memory.push(MemoryLine {
                what: "total asked".into(),
                bytes: clamp(total),
            });
            memory.push(MemoryLine {
                what: "MemTotal".into(),
                bytes: mem.total,
            });
            if total > u128::from(mem.total) {
                let missing = total - u128::from(mem.total);
                memory.push(MemoryLine {
                    what: "missing".into(),
                    bytes: clamp(missing),
                });
                let fits = ByteSize(mem.total.saturating_sub(reserve));
                let mut message = format!(
                    "memory limits of {} plus a reserve of {} do not fit in this host's {}: {} missing. At most {} of limits fit",
                    shown(asked),
                    ByteSize(reserve).both(),
                    ByteSize(mem.total).both(),
                    shown(missing),
                    fits.both()
                );
                // A real incident: `free -g` said 503, someone asked for 500GiB, and the kernel,
                // page cache and sshd had nothing left. A limit this close to MemTotal is
                // usually a unit mix-up.
                if let Some(max) = instances.iter().filter_map(|i| i.memory).max() {
                    if u128::from(max) * 10 >= u128::from(mem.total) * 9 {
                        message.push_str(&format!(
                            ". Check the units: `free -g` and `nvidia-smi` print GiB, so this host's {} is {}; \
                             a limit of {} leaves the kernel, page cache and sshd {} (GiB and GB differ by 7%)",
                            ByteSize(mem.total).binary(),
                            ByteSize(mem.total).decimal(),
                            ByteSize(max).both(),
                            ByteSize(mem.total.saturating_sub(max)).both()
                        ));
                    }
                }
                refusals.push(Refusal {
                    key: by_service
                        .keys()
                        .next()
                        .map_or("reserve_memory".into(), |s| format!("services.{s}.memory")),
                    message,
                });
            } else {
                let headroom = clamp(u128::from(mem.total) - total);
                memory.push(MemoryLine {
                    what: "headroom".into(),
                    bytes: headroom,
                });
                if asked > 0 && headroom < mem.total / 10 {
                    warnings.push(format!(
                        "headroom is {} ({}% of MemTotal); under 10% leaves little for page cache",
                        ByteSize(headroom).both(),
                        u128::from(headroom) * 100 / u128::from(mem.total.max(1))
                    ));
                }
            }
        }
    }

    // GPU memory per GPU.
    let mut per_gpu: BTreeMap<u32, u128> = BTreeMap::new();
    for i in instances {
        if let (Some(g), Some(m)) = (&i.gpu, i.gpu_memory) {
            *per_gpu.entry(g.index).or_default() += u128::from(m);
        }
    }
    for (idx, sum) in per_gpu {
        if let Some(g) = input.gpus.gpus.iter().find(|g| g.index == idx) {
            if sum > u128::from(g.memory_total) {
                let who: Vec<&str> = instances
                    .iter()
                    .filter(|i| {
                        i.gpu.as_ref().is_some_and(|x| x.index == idx) && i.gpu_memory.is_some()
                    })
                    .map(|i| i.name.as_str())
                    .collect();
                refusals.push(Refusal {
                    key: format!(
                        "services.{}.gpu_memory",
                        who.first().and_then(|n| n.split('#').next()).unwrap_or("?")
                    ),
                    message: format!(
                        "GPU {idx} ({}) has {} but {} ask for {} ({} missing)",
                        g.name,
                        ByteSize(g.memory_total).both(),
                        who.join(", "),
                        shown(sum),
                        shown(sum - u128::from(g.memory_total))
                    ),
                });
            }
        }
    }

    // Pinned CPUs must exist and be allowed.
    if let Some(topo) = input.cpu {
        for svc in config.workloads() {
            let Some(list) = &svc.cpus else { continue };
            let bad: Vec<usize> = list
                .0
                .iter()
                .copied()
                .filter(|c| !topo.allowed.contains(c))
                .collect();
            if !bad.is_empty() {
                let exist = bad.iter().all(|c| topo.online.contains(c));
                refusals.push(Refusal {
                    key: format!("services.{}.cpus", svc.name),
                    message: format!(
                        "CPU(s) {} {}; this host has {} and steward may use {}",
                        steward_host::cpulist::format(&bad),
                        if exist {
                            "are not allowed for steward (Cpus_allowed_list)"
                        } else {
                            "do not exist"
                        },
                        steward_host::cpulist::format(&topo.online),
                        steward_host::cpulist::format(&topo.allowed)
                    ),
                });
            }
        }
        if topo.numa_nodes.len() > 1 {
            let unpinned: Vec<&str> = instances
                .iter()
                .filter(|i| i.gpu.is_some() && i.cpus.is_none())
                .map(|i| i.name.as_str())
                .collect();
            if !unpinned.is_empty() {
                warnings.push(format!(
                    "{} NUMA nodes, and GPU replicas {} are not pinned: set cpus_per_replica so each runs next to its GPU",
                    topo.numa_nodes.len(),
                    unpinned.join(", ")
                ));
            }
        }
    }

    // Limits below what the service was seen to use.
    for svc in config.workloads() {
        if let (Some(limit), Some(&peak)) = (svc.memory, input.observed_peaks.get(&svc.name)) {
            if limit.bytes() < peak {
                warnings.push(format!(
                    "services.{}.memory = {} is below the {} it was seen using on an earlier run (events.jsonl); expect OOM kills",
                    svc.name,
                    limit.both(),
                    ByteSize(peak).both()
                ));
            }
        }
    }

    Admission {
        admitted: refusals.is_empty(),
        memory,
        refusals,
        warnings,
    }
}

/// A sum for a `u64` field: exact, or `u64::MAX` past it.
fn clamp(bytes: u128) -> u64 {
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

/// A sum in both units, or that it is past what 64 bits hold.
fn shown(bytes: u128) -> String {
    match u64::try_from(bytes) {
        Ok(b) => ByteSize(b).both(),
        Err(_) => "more than 16 EiB".into(),
    }
}
