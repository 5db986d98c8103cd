//! The file as written: serde structs that mirror `steward.toml` one to one.
//!
//! Anything that can be checked while reading one value is checked here (units, signals,
//! CPU lists), so that toml can point at the exact value. Checks that relate several keys
//! live in `resolve`.

use crate::deps::RawDependsOn;
use crate::gpu::{CudaEnv, GpuSelector};
use crate::health::RawHealth;
use crate::{ByteSize, ConfigError, CpuList, HumanDuration, Location, StopSignal};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where the queue, logs, events and control socket live; relative to the config's folder.
    pub state_dir: Option<PathBuf>,
    /// Memory kept free for the host; admission refuses limits that eat into it.
    pub reserve_memory: Option<ByteSize>,
    #[serde(default)]
    pub services: BTreeMap<String, RawService>,
    #[serde(default)]
    pub pipelines: BTreeMap<String, crate::pipeline::RawPipeline>,
    pub gateway: Option<crate::gateway::RawGateway>,
    pub queue: Option<RawQueue>,
}

/// `[queue]`: the job store's upkeep.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub backup_interval: Option<crate::HumanDuration>,
    pub backups_kept: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub command: Option<RawCommand>,
    #[serde(default)]
    pub shell: bool,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    pub restart: Option<RawRestart>,
    #[serde(default)]
    pub backoff: RawBackoff,
    #[serde(default)]
    pub crash_loop: RawCrashLoop,
    pub stop_signal: Option<StopSignal>,
    pub stop_timeout: Option<HumanDuration>,
    pub memory: Option<ByteSize>,
    pub memory_swap: Option<ByteSize>,
    pub pids_max: Option<u32>,
    pub cpus: Option<CpuList>,
    pub oom_score_adj: Option<i32>,
    pub core_dumps: Option<bool>,
    #[serde(default)]
    pub log: RawLog,
    pub health: Option<RawHealth>,
    pub liveness_failures: Option<u32>,
    #[serde(default)]
    pub notify: bool,
    pub depends_on: Option<RawDependsOn>,
    pub replicas: Option<u32>,
    pub gpus: Option<GpuSelector>,
    pub replicas_per_gpu: Option<u32>,
    pub gpu_settle: Option<HumanDuration>,
    pub cuda_env: Option<CudaEnv>,
    pub start_stagger: Option<HumanDuration>,
    pub cpus_per_replica: Option<u32>,
    pub gpu_memory: Option<ByteSize>,
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

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    pub initial: Option<HumanDuration>,
    pub max: Option<HumanDuration>,
    pub jitter: Option<f64>,
    pub reset_after: Option<HumanDuration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCrashLoop {
    pub exits: Option<u32>,
    pub window: Option<HumanDuration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub max_size: Option<ByteSize>,
    pub keep: Option<u32>,
}

pub fn parse(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| syntax_error(&e, text, path))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let offset = inner.span().map_or(0, |s| s.start);
        ConfigError::Invalid {
            location: Location::from_offset(path.to_path_buf(), text, offset),
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            message: with_did_you_mean(inner.message()),
        }
    })
}

fn syntax_error(e: &toml::de::Error, text: &str, path: &Path) -> ConfigError {
    let offset = e.span().map_or(0, |s| s.start);
    ConfigError::Syntax {
        location: Location::from_offset(path.to_path_buf(), text, offset),
        message: format!("TOML syntax: {}", e.message().trim()),
    }
}

/// serde says "unknown field `memroy`, expected one of `command`, ..."; a person wants to
/// hear "did you mean `memory`?".
fn with_did_you_mean(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|cand| (strsim::jaro_winkler(unknown, cand), cand))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, cand)) => format!("{message}; did you mean `{cand}`?"),
        None => message.to_string(),
    }
}
