//! From the file as written to the model steward runs: defaults filled in, relations between
//! keys checked, paths made absolute.

use crate::deps::{find_cycle, Condition};
use crate::gpu::{CudaEnv, GpuSelector};
use crate::health::HealthCheck;
use crate::raw::{RawCommand, RawConfig, RawRestart, RawService};
use crate::{ByteSize, ConfigError, CpuList, HumanDuration, Location, StopSignal};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A validated config, ready to run.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The config file, absolute.
    pub path: PathBuf,
    /// The state dir, absolute: `queue.db`, `logs/`, `events.jsonl`, `steward.sock`.
    pub state_dir: crate::StateDir,
    /// Memory admission keeps free for the host. `None`: the larger of 2 GiB and 5% of
    /// MemTotal, decided by the plan.
    pub reserve_memory: Option<ByteSize>,
    pub services: BTreeMap<String, Service>,
    pub pipelines: BTreeMap<String, crate::Pipeline>,
    pub gateway: Option<crate::Gateway>,
    pub queue: QueueSettings,
}

/// `[queue]`: online backups of `queue.db` into `state_dir/backups/` while the agent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueueSettings {
    pub backup_interval: HumanDuration,
    /// The newest this many backups are kept.
    pub backups_kept: usize,
}

impl Config {
    /// Services and the worker replicas of pipelines: everything the plan places.
    pub fn workloads(&self) -> impl Iterator<Item = &Service> {
        self.services
            .values()
            .chain(self.pipelines.values().map(|p| &p.workers))
    }
}

#[derive(Debug, Clone, Serialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Backoff {
    pub initial: HumanDuration,
    pub max: HumanDuration,
    /// Fraction of each delay that is randomised, 0 to 1.
    pub jitter: f64,
    /// A run at least this long counts as healthy and resets the backoff.
    pub reset_after: HumanDuration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CrashLoop {
    /// More than this many exits within `window` is a crash loop.
    pub exits: u32,
    pub window: HumanDuration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LogRotation {
    pub max_size: ByteSize,
    pub keep: u32,
}

impl Backoff {
    /// The delay before retry `n` (0-based): `initial * 2^n`, capped at `max`, less up to
    /// `jitter` of it at random (`random` in 0..1), so it never exceeds `max`.
    pub fn delay(&self, n: u32, random: f64) -> std::time::Duration {
        let base = self
            .initial
            .0
            .saturating_mul(2u32.saturating_pow(n.min(31)))
            .min(self.max.0);
        base.mul_f64(1.0 - self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0))
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: HumanDuration::secs(1),
            max: HumanDuration::secs(60),
            jitter: 0.2,
            reset_after: HumanDuration::secs(30),
        }
    }
}

impl Default for CrashLoop {
    fn default() -> Self {
        CrashLoop {
            exits: 5,
            window: HumanDuration::secs(60),
        }
    }
}

impl Default for LogRotation {
    fn default() -> Self {
        LogRotation {
            max_size: ByteSize(10 * 1024 * 1024),
            keep: 5,
        }
    }
}

/// Processes steward starts are preferred OOM victims over the host's own daemons.
pub const DEFAULT_OOM_SCORE_ADJ: i32 = 500;

pub(crate) struct Ctx<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Ctx<'_> {
    pub(crate) fn err(&self, key: &[&str], message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            location: Location::from_offset(
                self.path.to_path_buf(),
                self.text,
                locate(self.text, key),
            ),
            key: key.join("."),
            message: message.into(),
        }
    }
}

pub fn resolve(raw: RawConfig, text: &str, path: &Path) -> Result<Config, ConfigError> {
    let ctx = Ctx { text, path };
    let abs_path = absolute(path);
    let base = abs_path.parent().map(Path::to_path_buf).unwrap_or_default();
    let state_dir = crate::StateDir::new(
        base.join(
            raw.state_dir
                .unwrap_or_else(|| crate::DEFAULT_STATE_DIR.into()),
        ),
    );
    let mut services = BTreeMap::new();
    for (name, svc) in raw.services {
        let resolved = resolve_service(&ctx, "services", &name, svc, &base)?;
        services.insert(name, resolved);
    }
    check_graph(&ctx, &services)?;
    let mut pipelines = BTreeMap::new();
    for (name, p) in raw.pipelines {
        if services.contains_key(&name) {
            return Err(ctx.err(
                &["pipelines", name.as_str()],
                format!("\"{name}\" is also a service; give the pipeline another name"),
            ));
        }
        let resolved = crate::pipeline::resolve(&ctx, &name, p, &base)?;
        pipelines.insert(name, resolved);
    }
    let gateway = raw
        .gateway
        .map(|g| crate::gateway::resolve(&ctx, g, &services))
        .transpose()?;
    let raw_queue = raw.queue.unwrap_or_default();
    let queue = QueueSettings {
        backup_interval: raw_queue
            .backup_interval
            .unwrap_or(HumanDuration::secs(600)),
        backups_kept: raw_queue.backups_kept.unwrap_or(5),
    };
    if queue.backup_interval.0 < std::time::Duration::from_secs(1) {
        return Err(ctx.err(
            &["queue", "backup_interval"],
            "must be at least 1s (a backup copies the whole queue.db)",
        ));
    }
    if queue.backups_kept == 0 {
        return Err(ctx.err(
            &["queue", "backups_kept"],
            "must be at least 1: the newest backup is what `steward queue restore` brings back",
        ));
    }
    Ok(Config {
        path: abs_path,
        state_dir,
        reserve_memory: raw.reserve_memory,
        services,
        pipelines,
        gateway,
        queue,
    })
}

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

    for k in raw.env.keys() {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(ctx.err(
                &[section, name, "env", k],
                format!("\"{k}\" is not a valid environment variable name"),
            ));
        }
    }

    let defaults = Backoff::default();
    let backoff = Backoff {
        initial: raw.backoff.initial.unwrap_or(defaults.initial),
        max: raw.backoff.max.unwrap_or(defaults.max),
        jitter: raw.backoff.jitter.unwrap_or(defaults.jitter),
        reset_after: raw.backoff.reset_after.unwrap_or(defaults.reset_after),
    };
    if backoff.initial > backoff.max {
        return Err(ctx.err(
            &[section, name, "backoff", "initial"],
            format!(
                "initial backoff {} is longer than max {}; initial must be <= max",
                backoff.initial, backoff.max
            ),
        ));
    }
    if !(0.0..=1.0).contains(&backoff.jitter) {
        return Err(ctx.err(
            &[section, name, "backoff", "jitter"],
            format!("jitter {} is outside 0..1; it is the fraction of each delay that is random, e.g. 0.2", backoff.jitter),
        ));
    }

    let cl_default = CrashLoop::default();
    let crash_loop = CrashLoop {
        exits: raw.crash_loop.exits.unwrap_or(cl_default.exits),
        window: raw.crash_loop.window.unwrap_or(cl_default.window),
    };
    if crash_loop.exits == 0 {
        return Err(ctx.err(
            &[section, name, "crash_loop", "exits"],
            "must be at least 1: a crash loop is more than this many exits within `window`",
        ));
    }
    if crash_loop.window.0.is_zero() {
        return Err(ctx.err(
            &[section, name, "crash_loop", "window"],
            "must be longer than 0s",
        ));
    }

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
    })
}

/// Checks `depends_on` across the whole file: names exist, no service waits on itself,
/// no cycle, and every condition can be met.
fn check_graph(ctx: &Ctx, services: &BTreeMap<String, Service>) -> Result<(), ConfigError> {
    for svc in services.values() {
        for (dep, cond) in &svc.depends_on {
            let at = ["services", svc.name.as_str(), "depends_on"];
            if dep == &svc.name {
                return Err(ctx.err(&at, format!("\"{dep}\" depends on itself")));
            }
            let Some(target) = services.get(dep) else {
                let known: Vec<&str> = services.keys().map(String::as_str).collect();
                let guess = known
                    .iter()
                    .map(|k| (strsim::jaro_winkler(dep, k), *k))
                    .filter(|(s, _)| *s > 0.8)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, k)| format!("; did you mean \"{k}\"?"))
                    .unwrap_or_default();
                return Err(ctx.err(
                    &at,
                    format!(
                        "\"{dep}\" is not a service in this file (it has: {}){guess}",
                        known.join(", ")
                    ),
                ));
            };
            match cond {
                Condition::Healthy if !target.has_readiness() => {
                    return Err(ctx.err(
                        &at,
                        format!("waits for \"{dep}\" to be healthy, but {dep} has no health check: add [services.{dep}.health], set notify = true on it, or wait for \"started\""),
                    ))
                }
                Condition::Completed if target.restart == RestartPolicy::Always => {
                    return Err(ctx.err(
                        &at,
                        format!("waits for \"{dep}\" to complete, but {dep} has restart = \"always\" and never completes; make it a one-shot with restart = \"never\""),
                    ))
                }
                _ => {}
            }
        }
    }
    let graph: BTreeMap<String, Vec<String>> = services
        .values()
        .map(|s| (s.name.clone(), s.depends_on.keys().cloned().collect()))
        .collect();
    if let Some(cycle) = find_cycle(&graph) {
        return Err(ctx.err(
            &["services", cycle[0].as_str(), "depends_on"],
            format!(
                "dependency cycle: {}; nothing in it could ever start",
                cycle.join(" -> ")
            ),
        ));
    }
    Ok(())
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

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Byte offset of the deepest part of `key` that exists in the file, so that an error about
/// a relation between keys still points at the right line.
fn locate(text: &str, key: &[&str]) -> usize {
    let Ok(root) = toml::de::DeTable::parse(text) else {
        return 0;
    };
    let mut offset = 0;
    let mut table = Some(root.get_ref());
    for part in key {
        let Some(t) = table else { break };
        let Some((k, v)) = t.get_key_value(*part) else {
            break;
        };
        offset = k.span().start;
        table = match v.get_ref() {
            toml::de::DeValue::Table(inner) => Some(inner),
            _ => None,
        };
    }
    offset
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
