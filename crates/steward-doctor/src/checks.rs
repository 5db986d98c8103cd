use serde::Serialize;
use steward_config::{ByteSize, Config};
use steward_host::{DnsAnswer, HostFacts};
use steward_plan::Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Skip,
    Warn,
    Fail,
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Level::Ok => "ok",
            Level::Skip => "skip",
            Level::Warn => "warn",
            Level::Fail => "fail",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    /// What was seen.
    pub seen: String,
    /// What to do, naming the config key or the command; empty when nothing is needed.
    pub fix: String,
}

pub struct DoctorInputs<'a> {
    pub facts: &'a HostFacts,
    pub config: Option<&'a Config>,
    pub plan: Option<&'a Plan>,
    /// `None` when the DNS check was not run (`--no-dns`).
    pub dns: Option<&'a [DnsAnswer]>,
    /// Host pids of the processes steward runs, so their GPU memory is not "foreign".
    pub own_pids: &'a [u32],
}

fn check(
    name: &'static str,
    level: Level,
    seen: impl Into<String>,
    fix: impl Into<String>,
) -> Check {
    Check {
        name,
        level,
        seen: seen.into(),
        fix: fix.into(),
    }
}

const TEN_GB: u64 = 10_000_000_000;
const TWO_GIB: u64 = 2 << 30;

pub fn run(input: &DoctorInputs) -> Vec<Check> {
    let mut out = Vec::new();
    let f = input.facts;
    for m in &f.missing {
        out.push(check(
            "facts",
            Level::Warn,
            format!("could not read {m}"),
            "the checks that need it are skipped",
        ));
    }
    out.push(core_dumps(f));
    out.push(disk(f));
    out.extend(memory(input));
    out.push(zombies(f));
    out.extend(kernel_log(f));
    out.extend(gpus(input));
    out.push(cgroups(input));
    out.push(dns(input));
    out.extend(env(input));
    out.extend(oom_scores(input));
    out
}

/// The agent follows the kernel's log for what no exit shows: a child's OOM kill, Xids.
fn kernel_log(f: &HostFacts) -> Option<Check> {
    Some(match f.kernel_log.as_ref()? {
        Ok(()) => check(
            "kernel-log",
            Level::Ok,
            "/dev/kmsg is readable: OOM kills of any service process and GPU Xid errors are followed".to_string(),
            "",
        ),
        Err(e) => check(
            "kernel-log",
            Level::Warn,
            format!("/dev/kmsg cannot be read ({e}): an OOM kill of a child that its service survives, and GPU Xid errors, go unseen"),
            "run the agent as root (or with CAP_SYSLOG); in a container, give it /dev/kmsg (privileged, as NVIDIA's node agents are)",
        ),
    })
}

fn core_dumps(f: &HostFacts) -> Check {
    let c = &f.core_dumps;
    let pattern = c.pattern.clone().unwrap_or_else(|| "unknown".into());
    let kept = c
        .systemd_coredump_bytes
        .filter(|b| *b > 0)
        .map(|b| format!(", {} kept in /var/lib/systemd/coredump", ByteSize(b).both()))
        .unwrap_or_default();
    if !c.enabled() {
        return check(
            "core-dumps",
            Level::Ok,
            format!("off (core limit 0), pattern {pattern:?}{kept}"),
            "",
        );
    }
    let free = f.disk.map(|d| d.free);
    let seen = format!(
        "on (core limit {}), pattern {pattern:?}, {} free{kept}",
        c.limit.as_deref().unwrap_or("?"),
        free.map_or("unknown space".into(), |b| ByteSize(b).both())
    );
    if free.is_some_and(|b| b < TEN_GB) {
        return check(
            "core-dumps",
            Level::Fail,
            seen,
            "one core of a process that mapped GPU memory can fill this disk: `ulimit -c 0` for the host's shell and keep services at core_dumps = false (the default)",
        );
    }
    check(
        "core-dumps",
        Level::Warn,
        seen,
        "services get RLIMIT_CORE=0 unless core_dumps = true; consider `ulimit -c 0` for the rest",
    )
}

fn disk(f: &HostFacts) -> Check {
    let Some(d) = f.disk else {
        return check("disk", Level::Skip, "state dir free space unknown", "");
    };
    let pct = (d.free * 100).checked_div(d.total).unwrap_or(0);
    let seen = format!(
        "state dir filesystem: {} free of {} ({pct}%)",
        ByteSize(d.free).both(),
        ByteSize(d.total).both()
    );
    if d.read_only {
        return check(
            "disk",
            Level::Fail,
            format!("{seen}, but read-only"),
            "steward writes its queue, logs and events there: remount it read-write, or set state_dir to a writable place",
        );
    }
    if d.free < TWO_GIB || pct < 5 {
        check("disk", Level::Fail, seen, "free space (logs rotate at log.max_size x log.keep per service), or set state_dir on a larger disk")
    } else {
        check("disk", Level::Ok, seen, "")
    }
}

fn memory(input: &DoctorInputs) -> Vec<Check> {
    let mut out = Vec::new();
    if let Some(m) = &input.facts.memory {
        if m.swap_total > 0 {
            out.push(check(
                "swap",
                Level::Warn,
                format!("swap on: {} ({} free)", ByteSize(m.swap_total).both(), ByteSize(m.swap_free).both()),
                "a worker that swaps stalls instead of failing; keep memory_swap = memory (the default) or `swapoff -a`",
            ));
        } else {
            out.push(check("swap", Level::Ok, "no swap", ""));
        }
    }
    if let Some(plan) = input.plan {
        let a = &plan.admission;
        if !a.admitted {
            for r in &a.refusals {
                out.push(check(
                    "admission",
                    Level::Fail,
                    r.message.clone(),
                    format!("lower {} (see `steward plan`)", r.key),
                ));
            }
        } else {
            out.push(check(
                "admission",
                Level::Ok,
                "the config's limits fit this host",
                "",
            ));
        }
        for w in &a.warnings {
            out.push(check(
                "admission",
                Level::Warn,
                w.clone(),
                "see `steward plan`",
            ));
        }
    }
    out
}

fn zombies(f: &HostFacts) -> Check {
    if f.zombies.is_empty() {
        return check("zombies", Level::Ok, "none", "");
    }
    let mut parents: Vec<String> = f
        .zombies
        .iter()
        .map(|z| format!("{} (pid {})", z.parent, z.ppid))
        .collect();
    parents.sort();
    parents.dedup();
    check(
        "zombies",
        Level::Warn,
        format!("{} zombie(s), not reaped by: {}", f.zombies.len(), parents.join(", ")),
        "run services under steward (a subreaper), or as a container's init (`steward up` as PID 1, or docker --init)",
    )
}

fn gpus(input: &DoctorInputs) -> Vec<Check> {
    let inv = &input.facts.gpus;
    let wants = input
        .config
        .is_some_and(|c| c.services.values().any(|s| s.gpus.is_some()));
    if inv.gpus.is_empty() {
        let why = inv
            .absent_because
            .clone()
            .unwrap_or_else(|| "none found".into());
        return vec![if wants {
            check(
                "gpus",
                Level::Fail,
                format!("no GPUs: {why}"),
                "install the NVIDIA driver (libnvidia-ml.so.1), or remove `gpus` from the config",
            )
        } else {
            check(
                "gpus",
                Level::Ok,
                format!("no GPUs ({why}); fine for a CPU node"),
                "",
            )
        }];
    }
    let mut out = vec![check(
        "gpus",
        Level::Ok,
        format!(
            "{} GPU(s) via {}, driver {}",
            inv.gpus.len(),
            inv.source,
            inv.driver_version.as_deref().unwrap_or("unknown")
        ),
        "",
    )];
    for g in &inv.gpus {
        let id = format!("GPU {} ({})", g.index, g.name);
        if g.persistence_mode == Some(false) {
            out.push(check("gpu-persistence", Level::Warn, format!("{id}: persistence mode off"), "`nvidia-smi -pm 1` (or the nvidia-persistenced service): without it the driver reloads on each start"));
        }
        let ecc =
            g.ecc_uncorrected_volatile.unwrap_or(0) + g.ecc_uncorrected_aggregate.unwrap_or(0);
        if ecc > 0 {
            out.push(check(
                "gpu-ecc",
                Level::Fail,
                format!("{id}: {} uncorrected ECC error(s) (volatile {}, aggregate {})", ecc, g.ecc_uncorrected_volatile.unwrap_or(0), g.ecc_uncorrected_aggregate.unwrap_or(0)),
                "drain it and reset the GPU (`nvidia-smi -r -i N`); if they come back, the board needs service",
            ));
        }
        if g.retired_pages_pending == Some(true) || g.remapped_rows_pending == Some(true) {
            out.push(check(
                "gpu-memory-repair",
                Level::Fail,
                format!("{id}: page retirement or row remapping pending"),
                "reset the GPU (`nvidia-smi -r -i N`) or reboot so the repair takes effect",
            ));
        }
        let foreign: Vec<String> = g
            .processes
            .iter()
            .filter(|p| !input.own_pids.contains(&p.pid))
            .map(|p| {
                format!(
                    "pid {} ({})",
                    p.pid,
                    p.used_memory.map_or("?".into(), |b| ByteSize(b).binary())
                )
            })
            .collect();
        if !foreign.is_empty() {
            out.push(check(
                "gpu-foreign-memory",
                Level::Warn,
                format!(
                    "{id}: memory held by processes steward does not run: {}",
                    foreign.join(", ")
                ),
                "stop them, or lower gpu_memory: what they hold is not available to your replicas",
            ));
        }
    }
    out
}

fn cgroups(input: &DoctorInputs) -> Check {
    let c = &input.facts.cgroups;
    let limits = input.config.is_some_and(|cfg| {
        cfg.services
            .values()
            .any(|s| s.memory.is_some() || s.pids_max.is_some())
    });
    if c.hard_limits {
        return check(
            "cgroups",
            Level::Ok,
            format!(
                "cgroup {}, controllers {}: hard limits",
                c.version,
                c.controllers.join(" ")
            ),
            "",
        );
    }
    let seen = format!(
        "cgroup {}: {}",
        c.version,
        c.why_not.clone().unwrap_or_default()
    );
    let fix = "run steward under systemd with Delegate=yes (or as a container's PID 1); until then memory limits are soft (RSS polled) and pids_max is not enforced";
    check(
        "cgroups",
        if limits { Level::Warn } else { Level::Ok },
        seen,
        fix,
    )
}

fn dns(input: &DoctorInputs) -> Check {
    let Some(answers) = input.dns else {
        return check("dns", Level::Skip, "not checked (--no-dns)", "");
    };
    if answers.is_empty() {
        return check(
            "dns",
            Level::Fail,
            "no nameserver in /etc/resolv.conf",
            "add a `nameserver` line to /etc/resolv.conf",
        );
    }
    let bad: Vec<String> = answers
        .iter()
        .filter_map(|a| {
            a.result
                .as_ref()
                .err()
                .map(|e| format!("{} ({e})", a.resolver))
        })
        .collect();
    let good: Vec<String> = answers
        .iter()
        .filter_map(|a| {
            a.result
                .as_ref()
                .ok()
                .map(|ms| format!("{} in {ms} ms", a.resolver))
        })
        .collect();
    if bad.is_empty() {
        check(
            "dns",
            Level::Ok,
            format!("answered: {}", good.join(", ")),
            "",
        )
    } else {
        check(
            "dns",
            Level::Fail,
            format!("no answer within 2 s from {}", bad.join(", ")),
            "fix or replace the nameserver in /etc/resolv.conf; a model download or an API call that cannot resolve fails with \"Temporary failure in name resolution\"",
        )
    }
}

fn env(input: &DoctorInputs) -> Vec<Check> {
    let Some(cfg) = input.config else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for svc in cfg.services.values() {
        for (var, why) in [
            ("CUDA_LAUNCH_BLOCKING", "makes every kernel launch synchronous: many times slower, meant for debugging only"),
            ("PYTORCH_NO_CUDA_MEMORY_CACHING", "disables PyTorch's allocator cache: every allocation goes to the driver, much slower"),
        ] {
            if svc.resolved_env.get(var).is_some_and(|v| v.trim() == "1") {
                out.push(check(
                    "env",
                    Level::Warn,
                    format!("services.{}.env has {var}=1: it {why}", svc.name),
                    format!("remove {var} from services.{}.env", svc.name),
                ));
            }
        }
    }
    if out.is_empty() {
        out.push(check(
            "env",
            Level::Ok,
            "no debugging-only CUDA variables in the services' env",
            "",
        ));
    }
    out
}

fn oom_scores(input: &DoctorInputs) -> Vec<Check> {
    let (Some(cfg), Some(plan)) = (input.config, input.plan) else {
        return Vec::new();
    };
    let headroom = plan
        .admission
        .memory
        .iter()
        .find(|l| l.what == "headroom")
        .map(|l| l.bytes);
    let total = plan
        .admission
        .memory
        .iter()
        .find(|l| l.what == "MemTotal")
        .map(|l| l.bytes);
    let no_reserve = cfg.reserve_memory.is_some_and(|r| r.bytes() == 0)
        || matches!((headroom, total), (Some(h), Some(t)) if h < t / 20)
        || !plan.admission.admitted;
    cfg.services
        .values()
        .filter(|s| s.oom_score_adj <= 0 && no_reserve)
        .map(|s| {
            check(
                "oom-score",
                Level::Warn,
                format!("services.{} has oom_score_adj = {} and the host has little or no memory reserve", s.name, s.oom_score_adj),
                format!("set services.{}.oom_score_adj = 500 (the default) so the kernel kills a worker before sshd or steward", s.name),
            )
        })
        .collect()
}
