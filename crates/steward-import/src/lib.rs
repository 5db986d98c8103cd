//! `steward import`: docker compose files in, the equivalent steward.toml out, with a
//! report of every decision. Pure but for reading the files it is given (and the
//! `env_file`s and `.env` they name): text in, text and decisions out.
//!
//! The way through: [`compose`] reads and merges the files (anchors, merge keys,
//! interpolation, overrides), [`map`] turns each service into a [`draft::Draft`] (with
//! [`health`] and [`units`]), [`collapse`] folds worker chains into `replicas_per_gpu`,
//! [`emit`] writes the annotated TOML.

pub mod collapse;
pub mod compose;
pub mod draft;
pub mod emit;
pub mod error;
pub mod gpus;
pub mod health;
pub mod interpolate;
pub mod limits;
pub mod map;
pub mod report;
pub mod units;
pub mod unmapped;
pub mod yaml;

pub use error::ImportError;
pub use report::{Decision, What};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How to import.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Fold worker chains into one service with `gpus` and `replicas_per_gpu`.
    pub collapse: bool,
}

/// What an import made.
#[derive(Debug)]
pub struct Imported {
    pub toml: String,
    pub decisions: Vec<Decision>,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
}

impl Imported {
    /// What could not be taken over.
    pub fn cannot_map(&self) -> usize {
        self.decisions
            .iter()
            .filter(|d| d.what == What::CannotMap)
            .count()
    }
}

/// Top-level sections, and what steward makes of them.
const TOP_LEVEL_NOTES: &[(&str, &str)] = &[
    (
        "networks",
        "host processes share the host's network; services reach each other on 127.0.0.1",
    ),
    (
        "volumes",
        "host processes use the host's folders; point their paths there",
    ),
    (
        "secrets",
        "steward has no secret store: give values in env from the environment steward starts with",
    ),
    ("configs", "give the program its file from the host"),
    (
        "include",
        "steward reads one file: name the included files too (steward import a.yml b.yml)",
    ),
    ("models", "steward does not pull models"),
];

/// Imports `files` (compose's default files in `dir` when none is given); `env` is the
/// environment variables interpolate from (with the project's `.env` under them).
pub fn import(
    files: &[PathBuf],
    dir: &Path,
    env: &BTreeMap<String, String>,
    options: Options,
) -> Result<Imported, ImportError> {
    let files = compose::files_to_read(files, dir)?;
    let model = compose::load(&files, env)?;
    let mut report = report::Report::default();
    for (key, note) in TOP_LEVEL_NOTES {
        if model
            .root
            .get(key)
            .is_some_and(|n| !n.entries().is_empty() || !n.is_null())
        {
            report.add(None, key, What::CannotMap, *note);
        }
    }
    for key in ["version", "name"] {
        if model.root.get(key).is_some() {
            report.add(
                None,
                key,
                What::Dropped,
                "not needed: steward reads any compose version, and names its services itself",
            );
        }
    }
    let services = model.root.get("services");
    let entries = services.map(yaml::Node::entries).unwrap_or_default();
    let mut drafts: Vec<draft::Draft> = entries
        .iter()
        .map(|(name, svc)| map::service(name, svc, &model.dir, &model.vars, &mut report))
        .collect();
    check_cycles(&drafts, entries, &model)?;
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    for d in &mut drafts {
        local_hosts(d, &names, &mut report);
    }
    drop_unrun_dependencies(&mut drafts, &mut report);
    if options.collapse {
        drafts = collapse::collapse(drafts, &mut report);
    }
    let pinned: Vec<&str> = drafts
        .iter()
        .filter(|d| d.active && d.gpus.is_some() && d.get("cpus").is_some())
        .map(|d| d.name.as_str())
        .collect();
    if pinned.len() >= 2 {
        report.add(None, "cpuset", What::Changed, format!("{} pin GPU services to CPUs by hand: `cpus_per_replica = K` (instead of `cpus`) lets the plan give each replica K whole cores near its GPU, never shared", pinned.join(", ")));
    }
    let sources: Vec<String> = files
        .iter()
        .map(|f| {
            f.file_name().map_or_else(
                || f.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        })
        .collect();
    Ok(Imported {
        toml: emit::toml(&drafts, &sources),
        decisions: report.0,
        files,
    })
}

/// A `depends_on` cycle is an error, named with the file and the place of the first
/// service's `depends_on`: nothing in it could ever start.
fn check_cycles(
    drafts: &[draft::Draft],
    entries: &[(String, yaml::Node)],
    model: &compose::Compose,
) -> Result<(), ImportError> {
    let graph: BTreeMap<&str, Vec<&str>> = drafts
        .iter()
        .map(|d| {
            (
                d.name.as_str(),
                d.depends_on.iter().map(|(n, _)| n.as_str()).collect(),
            )
        })
        .collect();
    for start in graph.keys() {
        let mut path = vec![*start];
        if let Some(cycle) = find_cycle(&graph, &mut path) {
            let first = cycle[0];
            let at = entries
                .iter()
                .find(|(n, _)| n == first)
                .and_then(|(_, s)| s.get("depends_on"));
            return Err(ImportError::At {
                path: model.origin.get(first).cloned().unwrap_or_default(),
                line: at.map_or(0, |n| n.line),
                col: at.map_or(0, |n| n.col),
                yaml_path: format!("services.{first}.depends_on"),
                message: format!(
                    "dependency cycle: {}; nothing in it could ever start",
                    cycle.join(" -> ")
                ),
            });
        }
    }
    Ok(())
}

fn find_cycle<'a>(
    graph: &BTreeMap<&'a str, Vec<&'a str>>,
    path: &mut Vec<&'a str>,
) -> Option<Vec<&'a str>> {
    let last = *path.last()?;
    for next in graph.get(last).into_iter().flatten() {
        if let Some(i) = path.iter().position(|p| p == next) {
            let mut cycle = path[i..].to_vec();
            cycle.push(next);
            return Some(cycle);
        }
        if path.len() < graph.len() {
            path.push(next);
            if let Some(c) = find_cycle(graph, path) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

/// An address that names another service as its host (`postgres://…@postgres:5432`)
/// reached it by compose's network name; on one host it is 127.0.0.1.
fn local_hosts(d: &mut draft::Draft, services: &[&str], report: &mut report::Report) {
    let service = d.name.clone();
    for (key, value) in &mut d.env {
        let text = value.clone();
        let mut new = text.clone();
        for name in services {
            for (before, after) in [("//", ":"), ("@", ":"), ("//", "/"), ("@", "/")] {
                new = new.replace(
                    &format!("{before}{name}{after}"),
                    &format!("{before}127.0.0.1{after}"),
                );
            }
        }
        if new != text {
            let hosts: Vec<&&str> = services
                .iter()
                .filter(|n| text.contains(&format!("{n}:")) || text.contains(&format!("{n}/")))
                .collect();
            report.add(Some(&service), &format!("environment.{key}"), What::Changed, format!("the host {} (a compose service) became 127.0.0.1: on one host, services reach each other there", hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(", ")));
            *value = new;
        }
    }
}

/// A dependency on a service steward will not run (written commented out, or not in the
/// file) is left out, and said.
fn drop_unrun_dependencies(drafts: &mut [draft::Draft], report: &mut report::Report) {
    let active: Vec<String> = drafts
        .iter()
        .filter(|d| d.active)
        .map(|d| d.name.clone())
        .collect();
    let known: Vec<String> = drafts.iter().map(|d| d.name.clone()).collect();
    for d in drafts.iter_mut() {
        let name = d.name.clone();
        d.depends_on.retain(|(dep, cond)| {
            if active.contains(dep) {
                return true;
            }
            let why = if known.contains(dep) {
                format!("{dep} ({}) is written commented out until it has a command: start it first yourself, or give it one and add the dependency back", cond.as_str())
            } else {
                format!("{dep} is not a service in the file")
            };
            report.add(Some(&name), "depends_on", What::Dropped, why);
            false
        });
    }
}
