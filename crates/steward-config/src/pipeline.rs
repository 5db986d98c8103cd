//! `[pipelines.NAME]`: a queue bound to worker replicas. The replicas' keys (replicas,
//! gpus, limits, env) are a service's, so they go through the same plan; the rest says how
//! jobs run.

use crate::backoff::{resolve_backoff, RawBackoff};
use crate::context::Ctx;
use crate::service::{resolve_service, RawCommand, RawRestart, RawService, Service};
use crate::worker::with_worker_keys;
use crate::{Backoff, ConfigError, HumanDuration};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

with_worker_keys! {
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    pub queue: Option<String>,
    pub mode: Option<PipelineMode>,
    pub command: Option<Vec<String>>,
    pub worker: Option<Vec<String>>,
    #[serde(default)]
    pub inputs: Vec<PathBuf>,
    pub glob: Option<String>,
    pub output_dir: Option<PathBuf>,
    pub expect_output: Option<String>,
    pub timeout: Option<HumanDuration>,
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub backoff: RawBackoff,
    pub quarantine_dir: Option<PathBuf>,
    pub quarantine: Option<QuarantineMode>,
    pub concurrency: Option<u32>,
    pub stall_timeout: Option<HumanDuration>,
    pub on_stall: Option<OnStall>,
    #[serde(default)]
    pub confine_inputs: bool,
    pub input_root: Option<PathBuf>,
}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PipelineMode {
    /// One process per job.
    PerJob,
    /// Long-running workers that lease jobs over HTTP.
    Lease,
}

/// What the stall watchdog does when nothing completed for `stall_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStall {
    /// A `stall` event naming the jobs and replicas.
    #[default]
    Report,
    /// The event, and the replicas holding those jobs are restarted (per-job: the jobs'
    /// processes are killed); each job's attempt is counted as `stalled`.
    Restart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuarantineMode {
    #[default]
    Move,
    Link,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pipeline {
    pub name: String,
    pub queue: String,
    pub mode: PipelineMode,
    /// Per-job: the argv template, with `{input}`, `{stem}`, `{name}`, `{output_dir}`,
    /// `{job_id}`, `{attempt}`.
    pub command: Vec<String>,
    /// Files enqueued when the pipeline starts (idempotent by content).
    pub inputs: Vec<PathBuf>,
    pub glob: Option<String>,
    pub output_dir: PathBuf,
    pub expect_output: Option<String>,
    pub timeout: HumanDuration,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub quarantine_dir: Option<PathBuf>,
    pub quarantine: QuarantineMode,
    /// Jobs each replica runs at once.
    pub concurrency: u32,
    pub stall_timeout: Option<HumanDuration>,
    pub on_stall: OnStall,
    /// Refuse inputs outside `input_root` (`..`, symlinks pointing out).
    pub confine_inputs: bool,
    pub input_root: Option<PathBuf>,
    /// The worker replicas, as a service: what the plan places and the supervisor runs
    /// (lease mode), or the slots jobs run in (per-job mode).
    pub workers: Service,
}

pub(crate) fn resolve(
    ctx: &Ctx,
    name: &str,
    mut raw: RawPipeline,
    base: &Path,
) -> Result<Pipeline, ConfigError> {
    let at = |k: &'static str| vec!["pipelines", name, k];
    let mode = raw.mode.unwrap_or(if raw.worker.is_some() {
        PipelineMode::Lease
    } else {
        PipelineMode::PerJob
    });
    let argv = match (mode, raw.command.take(), raw.worker.take()) {
        (PipelineMode::PerJob, Some(cmd), None) => cmd,
        (PipelineMode::Lease, None, Some(w)) => w,
        (PipelineMode::PerJob, _, _) => {
            return Err(ctx.err(&at("command"), "mode = \"per-job\" needs `command`, an argv template such as [\"pdftotext\", \"{input}\", \"{output_dir}/{stem}.txt\"] (and no `worker`)"))
        }
        (PipelineMode::Lease, _, _) => {
            return Err(ctx.err(&at("worker"), "mode = \"lease\" needs `worker`, the argv of a long-running worker such as [\"python3\", \"worker.py\"] (and no `command`)"))
        }
    };
    if argv.first().is_none_or(|a| a.is_empty()) {
        return Err(ctx.err(
            &at(if mode == PipelineMode::PerJob {
                "command"
            } else {
                "worker"
            }),
            "the argv is empty",
        ));
    }
    if mode == PipelineMode::PerJob {
        for a in &argv {
            crate::template::check(a).map_err(|m| ctx.err(&at("command"), m))?;
        }
    }
    if let Some(e) = &raw.expect_output {
        crate::template::check(e).map_err(|m| ctx.err(&at("expect_output"), m))?;
    }
    let max_attempts = raw.max_attempts.unwrap_or(3);
    if max_attempts == 0 {
        return Err(ctx.err(&at("max_attempts"), "must be at least 1"));
    }
    let concurrency = raw.concurrency.unwrap_or(1);
    if concurrency == 0 {
        return Err(ctx.err(&at("concurrency"), "must be at least 1"));
    }
    let timeout = raw.timeout.unwrap_or(HumanDuration::secs(3600));
    if timeout.0.is_zero() {
        return Err(ctx.err(&at("timeout"), "must be longer than 0s"));
    }
    if raw.on_stall == Some(OnStall::Restart) && raw.stall_timeout.is_none() {
        return Err(ctx.err(
            &at("on_stall"),
            "on_stall = \"restart\" needs stall_timeout, the time without a completed job that counts as a stall (e.g. stall_timeout = \"10m\")",
        ));
    }
    let backoff = resolve_backoff(ctx, &["pipelines", name], std::mem::take(&mut raw.backoff))?;
    // The replicas, resolved and checked exactly as a service would be.
    let workers = RawService {
        command: Some(RawCommand::Argv(argv.clone())),
        restart: Some(RawRestart::Always),
        ..Default::default()
    }
    .with_worker(raw.take_worker());
    let mut workers = resolve_service(ctx, "pipelines", name, workers, base)?;
    workers.pipeline = Some(name.to_string());
    workers.per_job = mode == PipelineMode::PerJob;
    let abs = |p: PathBuf| base.join(p);
    let queue = raw.queue.unwrap_or_else(|| name.to_string());
    if queue.is_empty() || queue.chars().any(char::is_control) {
        return Err(ctx.err(
            &["pipelines", name, "queue"],
            format!("{queue:?} cannot name a queue: it must be non-empty, with no control characters (NUL, newline, tab)"),
        ));
    }
    Ok(Pipeline {
        name: name.to_string(),
        queue,
        mode,
        command: argv,
        inputs: raw.inputs.into_iter().map(abs).collect(),
        glob: raw.glob,
        output_dir: abs(raw
            .output_dir
            .unwrap_or_else(|| format!("{name}-out").into())),
        expect_output: raw.expect_output,
        timeout,
        max_attempts,
        backoff,
        quarantine_dir: raw.quarantine_dir.map(abs),
        quarantine: raw.quarantine.unwrap_or_default(),
        concurrency,
        stall_timeout: raw.stall_timeout,
        on_stall: raw.on_stall.unwrap_or_default(),
        confine_inputs: raw.confine_inputs,
        input_root: raw.input_root.map(abs),
        workers,
    })
}
