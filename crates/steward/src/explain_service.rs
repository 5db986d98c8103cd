//! `steward explain SERVICE`: what to read for a service instead of a file. Its output
//! from the start of its current run (or of the last `runs` runs), found by the position
//! each run's `started` event recorded in its log, then the kernel's lines recorded for it
//! in those runs (its OOM kills), as `kernel: …` lines.

use anyhow::{bail, Result};
use std::io::{Read, Seek, SeekFrom};
use steward_config::StateDir;
use steward_events::{EventKind, EventLog};

/// Whether `name` has logs in `state_dir` (a service, a replica or a pipeline slot).
pub fn is_service(state_dir: &StateDir, name: &str) -> bool {
    !name.contains('/') && state_dir.service_logs(name).is_dir()
}

/// The readers for `name`'s last `runs` runs: its log from where the earliest of them
/// began, and its kernel lines since then.
pub fn inputs(state_dir: &StateDir, name: &str, runs: usize) -> Result<Vec<Box<dyn Read>>> {
    let dir = state_dir.service_logs(name);
    if !dir.is_dir() {
        bail!("no logs for {name:?} in {state_dir}");
    }
    let events = EventLog::read_all(&state_dir.events()).unwrap_or_default();
    let starts: Vec<(String, Option<u64>)> = events
        .iter()
        .filter(|e| e.service.as_deref() == Some(name))
        .filter_map(|e| match &e.kind {
            EventKind::Started { log_at, .. } => Some((e.ts.clone(), *log_at)),
            _ => None,
        })
        .collect();
    // The earliest run asked for; every kept byte when the events do not say.
    let from = starts.get(starts.len().saturating_sub(runs.max(1)));
    let (since_ts, at) = match from {
        Some((ts, Some(at))) => (Some(ts.clone()), *at),
        Some((ts, None)) => (Some(ts.clone()), 0),
        None => (None, 0),
    };
    let mut out: Vec<Box<dyn Read>> = Vec::new();
    for (path, skip) in steward_supervise::output::from_position(&dir, at) {
        let mut f = std::fs::File::open(&path)?;
        f.seek(SeekFrom::Start(skip))?;
        out.push(Box::new(f));
    }
    let kernel: String = events
        .iter()
        .filter(|e| e.service.as_deref() == Some(name))
        .filter(|e| since_ts.as_ref().is_none_or(|t| e.ts >= *t))
        .filter_map(|e| match &e.kind {
            EventKind::OomKill { message, .. } if !message.is_empty() => {
                Some(format!("kernel: {message}\n"))
            }
            _ => None,
        })
        .collect();
    out.push(Box::new(std::io::Cursor::new(kernel.into_bytes())));
    Ok(out)
}
