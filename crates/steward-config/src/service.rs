//! `[services.NAME]`: a long-running process steward supervises. Its own keys (the
//! command, restart policy, health, dependencies) and the worker keys it shares with
//! pipelines' replicas, resolved into a [`Service`] the plan places and the supervisor runs.

use crate::backoff::{resolve_backoff, resolve_crash_loop, RawBackoff, RawCrashLoop};
use crate::context::Ctx;
use crate::deps::{Condition, RawDependsOn};
use crate::gpu::{CudaEnv, GpuSelector};
use crate::health::{HealthCheck, RawHealth};
use crate::worker::{with_worker_keys, LogRotation};
use crate::{Backoff, ByteSize, ConfigError, CpuList, CrashLoop, HumanDuration, StopSignal};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

with_worker_keys! {
    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct RawService {
        pub command: Option<RawCommand>,
        #[serde(default)]
        pub shell: bool,
        pub restart: Option<RawRestart>,
        #[serde(default)]
        pub backoff: RawBackoff,
        #[serde(default)]
        pub crash_loop: RawCrashLoop,
        pub health: Option<RawHealth>,
        pub liveness_failures: Option<u32>,
        #[serde(default)]
        pub notify: bool,
        pub depends_on: Option<RawDependsOn>,
        pub on_fatal_finding: Option<OnFatalFinding>,
    }
}

/// `command = ["python3", "serve.py"]`, or a string that is split like a shell would
/// (without running one) unless `shell = true`.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "an argv array such as [\"python3\", \"serve.py\"] or a string"
)]
pub enum RawCommand {
    Argv(Vec<String>),
    Line(String),
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub enum RawRestart {
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub name: String,
    /// What is executed; with `shell = true` this is `["/bin/sh", "-c", line]`.
    pub argv: Vec<String>,
    pub shell: bool,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    pub restart: RestartPolicy,
    pub backoff: Backoff,
    pub crash_loop: CrashLoop,
    pub stop_signal: StopSignal,
    pub stop_timeout: HumanDuration,
    pub memory: Option<ByteSize>,
    /// Memory plus swap, as in compose's `memswap_limit`. Defaults to `memory`: no swap,
    /// because a GPU worker that swaps is slower than one that restarts.
    pub memory_swap: Option<ByteSize>,
    pub pids_max: Option<u32>,
    pub cpus: Option<CpuList>,
    pub oom_score_adj: i32,
    pub core_dumps: bool,
    pub log: LogRotation,
    pub health: Option<HealthCheck>,
    /// After it has been healthy, this many failed checks in a row restart it.
    pub liveness_failures: Option<u32>,
    /// The process says it is ready by sending `READY=1` to `$NOTIFY_SOCKET`.
    pub notify: bool,
    pub depends_on: BTreeMap<String, Condition>,
    pub replicas: u32,
    pub gpus: Option<GpuSelector>,
    pub replicas_per_gpu: Option<u32>,
    /// Without a health check or notify, a GPU replica counts as started after this long.
    pub gpu_settle: HumanDuration,
    pub cuda_env: CudaEnv,
    /// Delay between the starts of consecutive replicas.
    pub start_stagger: HumanDuration,
    /// What the process's environment gets from the config: `env` over the CUDA profile
    /// (when `gpus` is set). Per replica, `CUDA_VISIBLE_DEVICES`, `STEWARD_REPLICA` and
    /// `STEWARD_GPU` are added at start.
    pub resolved_env: BTreeMap<String, String>,
    /// Whole cores to pin each replica to (hyper-thread siblings together), chosen by the
    /// plan near the replica's GPU.
    pub cpus_per_replica: Option<u32>,
    /// GPU memory each replica is expected to use; admission checks the sum per GPU.
    pub gpu_memory: Option<ByteSize>,
    /// Set when these are the worker replicas of a pipeline.
    pub pipeline: Option<String>,
    /// Per-job pipeline slots: no long-running process; jobs run in them one at a time.
    pub per_job: bool,
    /// What a fatal finding in its running output does (a lost CUDA context, a dead
    /// engine): restart it (the default), or only report it.
    pub on_fatal_finding: OnFatalFinding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFatalFinding {
    #[default]
    Restart,
    Report,
}

impl Service {
    /// Whether something can say this service is healthy: a health check or READY=1.
    pub fn has_readiness(&self) -> bool {
        self.health.is_some() || self.notify
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        })
    }
}

/// The most replicas of one service: enough for any node, small enough that planning and
/// supervising them stays cheap.
pub const MAX_REPLICAS: u32 = 1024;
/// The most replicas per GPU.
pub const MAX_REPLICAS_PER_GPU: u32 = 64;

/// Processes steward starts are preferred OOM victims over the host's own daemons.
pub const DEFAULT_OOM_SCORE_ADJ: i32 = 500;

pub(crate) fn resolve_service(
    ctx: &Ctx,
    section: &'static str,
    name: &str,
    raw: RawService,
    base: &Path,
) -> Result<Service, ConfigError> {
    let key = |k: &'static str| -> Vec<&str> {
        if k.is_empty() {
            vec![section, name]
        } else {
            vec![section, name, k]
        }
    };
    if let Err(why) = check_name(name) {
        return Err(ctx.err(&key(""), why));
    }
    let argv = resolve_command(raw.command, raw.shell).map_err(|m| ctx.err(&key("command"), m))?;
    if let Some((i, _)) = argv.iter().enumerate().find(|(_, a)| a.contains('\0')) {
        return Err(ctx.err(
            &key("command"),
            format!("argument {i} holds a NUL byte, which no program can be given; remove it"),
        ));
    }

    for (k, v) in &raw.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(ctx.err(
                &[section, name, "env", k],
                format!("\"{k}\" is not a valid environment variable name"),
            ));
        }
        if v.contains('\0') {
            return Err(ctx.err(
                &[section, name, "env", k],
                "the value holds a NUL byte, which an environment cannot carry; remove it",
            ));
        }
    }

    let backoff = resolve_backoff(ctx, &[section, name], raw.backoff)?;
    let crash_loop = resolve_crash_loop(ctx, &[section, name], raw.crash_loop)?;

    if let Some(mem) = raw.memory {
        if mem.bytes() < 4 * 1024 * 1024 {
            return Err(ctx.err(
                &key("memory"),
                format!(
                    "{} is too small to run a process; give at least \"4MiB\"",
                    mem.both()
                ),
            ));
        }
    }
    let memory_swap = match (raw.memory, raw.memory_swap) {
        (None, Some(_)) => {
            return Err(ctx.err(
                &key("memory_swap"),
                "memory_swap is memory plus swap, so it needs `memory` to be set too",
            ))
        }
        (Some(mem), Some(swap)) if swap < mem => {
            return Err(ctx.err(
                &key("memory_swap"),
                format!(
                    "memory_swap {} is less than memory {}; it is the total of memory and swap, so it must be >= memory",
                    swap.both(),
                    mem.both()
                ),
            ))
        }
        (Some(mem), None) => Some(mem),
        (_, swap) => swap,
    };
    if raw.pids_max == Some(0) {
        return Err(ctx.err(&key("pids_max"), "must be at least 1"));
    }
    let oom_score_adj = raw.oom_score_adj.unwrap_or(DEFAULT_OOM_SCORE_ADJ);
    if !(-1000..=1000).contains(&oom_score_adj) {
        return Err(ctx.err(
            &key("oom_score_adj"),
            format!("{oom_score_adj} is outside -1000..1000 (the kernel's range)"),
        ));
    }

    let log_default = LogRotation::default();
    let log = LogRotation {
        max_size: raw.log.max_size.unwrap_or(log_default.max_size),
        keep: raw.log.keep.unwrap_or(log_default.keep),
    };
    if log.max_size.bytes() < 4096 {
        return Err(ctx.err(
            &[section, name, "log", "max_size"],
            "must be at least \"4KiB\"",
        ));
    }

    let restart = match raw.restart {
        Some(RawRestart::Always) => RestartPolicy::Always,
        Some(RawRestart::OnFailure) | None => RestartPolicy::OnFailure,
        Some(RawRestart::Never) => RestartPolicy::Never,
    };

    let health = match raw.health {
        None => None,
        Some(h) => Some(
            crate::health::resolve(h)
                .map_err(|(sub, m)| ctx.err(&[section, name, "health", sub], m))?,
        ),
    };
    if let Some(n) = raw.liveness_failures {
        if health.is_none() {
            return Err(ctx.err(
                &key("liveness_failures"),
                "needs a health check: add `health = { http = \"http://127.0.0.1:8000/health\" }`",
            ));
        }
        if n == 0 {
            return Err(ctx.err(&key("liveness_failures"), "must be at least 1"));
        }
    }
    if raw.replicas.is_some_and(|n| n > MAX_REPLICAS) {
        return Err(ctx.err(
            &key("replicas"),
            format!(
                "{} replicas are more than steward runs of one service ({MAX_REPLICAS})",
                raw.replicas.unwrap_or_default()
            ),
        ));
    }
    if raw
        .replicas_per_gpu
        .is_some_and(|n| n > MAX_REPLICAS_PER_GPU)
    {
        return Err(ctx.err(
            &key("replicas_per_gpu"),
            format!(
                "{} replicas per GPU are more than steward places ({MAX_REPLICAS_PER_GPU})",
                raw.replicas_per_gpu.unwrap_or_default()
            ),
        ));
    }
    if raw.replicas == Some(0) {
        return Err(ctx.err(
            &key("replicas"),
            "must be at least 1; to keep a service from running, leave it out or `steward stop` it",
        ));
    }
    if let Some(gpus) = &raw.gpus {
        let empty = match gpus {
            GpuSelector::Indexes(v) => v.is_empty(),
            GpuSelector::Uuids(v) => v.is_empty(),
            GpuSelector::All(_) => false,
        };
        if empty {
            return Err(ctx.err(
                &key("gpus"),
                "the list is empty; give GPU indexes such as [0, 1], UUIDs, or \"all\"",
            ));
        }
    }
    if let Some(k) = raw.replicas_per_gpu {
        if raw.gpus.is_none() {
            return Err(ctx.err(
                &key("replicas_per_gpu"),
                "needs `gpus`, e.g. gpus = \"all\"",
            ));
        }
        if k == 0 {
            return Err(ctx.err(&key("replicas_per_gpu"), "must be at least 1"));
        }
        if raw.replicas.is_some() {
            return Err(ctx.err(&key("replicas"), "give either `replicas` or `replicas_per_gpu`, not both: with replicas_per_gpu the count is GPUs x K"));
        }
    }
    if raw.cpus_per_replica == Some(0) {
        return Err(ctx.err(&key("cpus_per_replica"), "must be at least 1 (whole cores)"));
    }
    if raw.cpus_per_replica.is_some() && raw.cpus.is_some() {
        return Err(ctx.err(&key("cpus_per_replica"), "give either `cpus` (an explicit list) or `cpus_per_replica` (the plan picks), not both"));
    }
    let cuda_env = raw.cuda_env.unwrap_or_default();
    let resolved_env = if raw.gpus.is_some() {
        cuda_env.apply(&raw.env)
    } else {
        raw.env.clone()
    };

    Ok(Service {
        name: name.to_string(),
        argv,
        shell: raw.shell,
        env: raw.env,
        cwd: raw.cwd.map_or_else(|| base.to_path_buf(), |c| base.join(c)),
        restart,
        backoff,
        crash_loop,
        stop_signal: raw.stop_signal.unwrap_or_default(),
        stop_timeout: raw.stop_timeout.unwrap_or(HumanDuration::secs(10)),
        memory: raw.memory,
        memory_swap,
        pids_max: raw.pids_max,
        cpus: raw.cpus,
        oom_score_adj,
        core_dumps: raw.core_dumps.unwrap_or(false),
        log,
        health,
        liveness_failures: raw.liveness_failures,
        notify: raw.notify,
        depends_on: raw.depends_on.map(|d| d.into_map()).unwrap_or_default(),
        replicas: raw.replicas.unwrap_or(1),
        gpus: raw.gpus,
        replicas_per_gpu: raw.replicas_per_gpu,
        gpu_settle: raw.gpu_settle.unwrap_or(HumanDuration::secs(5)),
        cuda_env,
        start_stagger: raw.start_stagger.unwrap_or_default(),
        resolved_env,
        cpus_per_replica: raw.cpus_per_replica,
        gpu_memory: raw.gpu_memory,
        pipeline: None,
        per_job: false,
        on_fatal_finding: raw.on_fatal_finding.unwrap_or_default(),
    })
}

/// Service names become folder and cgroup names, so they are kept plain.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "\"{name}\" is not a valid service name; use up to 64 letters, digits, '-', '_' or '.', not starting with '.'"
        ))
    }
}

const SHELL_SYNTAX: &[char] = &['|', '&', ';', '<', '>', '$', '`', '*', '?', '(', ')', '~'];

fn resolve_command(command: Option<RawCommand>, shell: bool) -> Result<Vec<String>, String> {
    match (command, shell) {
        (None, _) => Err("missing; give the program to run, e.g. command = [\"python3\", \"serve.py\"]".into()),
        (Some(RawCommand::Line(line)), true) => {
            if line.trim().is_empty() {
                return Err("is empty".into());
            }
            Ok(vec!["/bin/sh".into(), "-c".into(), line])
        }
        (Some(RawCommand::Argv(_)), true) => Err(
            "with shell = true, give the command as one string, e.g. command = \"python3 serve.py | tee out.log\"".into(),
        ),
        (Some(RawCommand::Argv(argv)), false) => {
            if argv.first().is_none_or(|p| p.is_empty()) {
                return Err("the argv array is empty; its first item is the program to run".into());
            }
            Ok(argv)
        }
        (Some(RawCommand::Line(line)), false) => {
            if has_unquoted_shell_syntax(&line) {
                return Err(format!(
                    "\"{line}\" uses shell syntax, but no shell runs unless you ask: set shell = true, or give an argv array"
                ));
            }
            match shlex::split(&line) {
                Some(argv) if !argv.is_empty() => Ok(argv),
                Some(_) => Err("is empty".into()),
                None => Err(format!("\"{line}\" has unbalanced quotes")),
            }
        }
    }
}

/// True when the line holds `|`, `;`, `$`... outside quotes: it needs a shell to mean
/// what it says.
fn has_unquoted_shell_syntax(line: &str) -> bool {
    let (mut single, mut double, mut escaped) = (false, false, false);
    for c in line.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if !single => escaped = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            _ if !single && !double && SHELL_SYNTAX.contains(&c) => return true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_split_like_a_shell_but_refuse_shell_syntax() {
        assert_eq!(
            resolve_command(
                Some(RawCommand::Line("sh -c 'echo hi; exit 3'".into())),
                false
            )
            .unwrap(),
            vec!["sh", "-c", "echo hi; exit 3"]
        );
        assert!(
            resolve_command(Some(RawCommand::Line("a | b".into())), false)
                .unwrap_err()
                .contains("shell = true")
        );
        assert_eq!(
            resolve_command(Some(RawCommand::Line("a | b".into())), true).unwrap(),
            vec!["/bin/sh", "-c", "a | b"]
        );
        assert!(
            resolve_command(Some(RawCommand::Line("x 'open".into())), false)
                .unwrap_err()
                .contains("unbalanced")
        );
    }
}
