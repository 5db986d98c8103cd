//! The wiring behind `host`, `plan`, `doctor` and `up`'s preflight: gather the facts (the
//! effects), then hand them to the pure crates.

use anyhow::Result;
use std::collections::BTreeMap;
use std::path::Path;
use steward_config::{Config, StateDir};
use steward_events::{EventKind, EventLog};
use steward_host::{HostFacts, Sysroot};
use steward_plan::{AdmissionInputs, Plan};

/// The highest memory use seen per service in `events.jsonl` on earlier runs.
pub fn observed_peaks(state_dir: &StateDir) -> BTreeMap<String, u64> {
    let mut peaks = BTreeMap::new();
    for ev in EventLog::read_all(&state_dir.events()).unwrap_or_default() {
        if let (
            Some(name),
            EventKind::Exited {
                peak_memory: Some(p),
                ..
            },
        ) = (&ev.service, &ev.kind)
        {
            let service = name.split('#').next().unwrap_or(name).to_string();
            let e = peaks.entry(service).or_insert(0);
            *e = (*e).max(*p);
        }
    }
    peaks
}

/// Plans `config` against `facts`.
pub fn plan(config: &Config, facts: &HostFacts) -> Result<Plan> {
    let peaks = observed_peaks(&config.state_dir);
    let input = AdmissionInputs {
        mem: facts.memory.as_ref(),
        cpu: facts.cpu.as_ref(),
        gpus: &facts.gpus,
        observed_peaks: &peaks,
    };
    steward_plan::plan(config, &input)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config.path.display()))
}

/// The host's facts, read under `sysroot` (the live host by default). A bad
/// `STEWARD_FAKE_GPUS` is an error, never silently the real GPUs.
pub fn gather(sysroot: Option<&Path>, state_dir: &StateDir) -> Result<HostFacts> {
    steward_host::fake_gpus().map_err(anyhow::Error::msg)?;
    let root = sysroot.map_or_else(Sysroot::live, Sysroot::at);
    Ok(HostFacts::gather(&root, state_dir.path()))
}
