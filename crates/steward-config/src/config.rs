//! The whole file: its sections, resolved in order (services, then the dependencies
//! between them, pipelines, the gateway, the queue) into the [`Config`] steward runs.

use crate::context::{absolute, Ctx};
use crate::deps::{find_cycle, Condition};
use crate::pipeline::RawPipeline;
use crate::queue::{QueueSettings, RawQueue};
use crate::service::{resolve_service, RawService, RestartPolicy, Service};
use crate::{ByteSize, ConfigError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    pub pipelines: BTreeMap<String, RawPipeline>,
    pub gateway: Option<crate::gateway::RawGateway>,
    pub queue: Option<RawQueue>,
    pub node: Option<crate::node::RawNode>,
    pub http: Option<crate::http::RawHttp>,
}

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
    /// Shared: the supervisor holds each service without a copy of its own.
    pub services: BTreeMap<String, Arc<Service>>,
    pub pipelines: BTreeMap<String, crate::Pipeline>,
    pub gateway: Option<crate::Gateway>,
    pub queue: QueueSettings,
    pub node: crate::Node,
    /// The agent's HTTP face; `None` without an `[http]` section.
    pub http: Option<crate::Http>,
}

impl Config {
    /// Services and the worker replicas of pipelines: everything the plan places.
    pub fn workloads(&self) -> impl Iterator<Item = &Service> {
        self.services
            .values()
            .map(Arc::as_ref)
            .chain(self.pipelines.values().map(|p| &p.workers))
    }
}

/// The state dir `raw` names, relative to the config file's directory.
pub(crate) fn state_dir_of(raw: &RawConfig, path: &Path) -> crate::StateDir {
    let abs_path = absolute(path);
    let base = abs_path.parent().map(Path::to_path_buf).unwrap_or_default();
    crate::StateDir::new(
        base.join(
            raw.state_dir
                .clone()
                .unwrap_or_else(|| crate::DEFAULT_STATE_DIR.into()),
        ),
    )
}

pub(crate) fn resolve(raw: RawConfig, text: &str, path: &Path) -> Result<Config, ConfigError> {
    let ctx = Ctx { text, path };
    let abs_path = absolute(path);
    let base = abs_path.parent().map(Path::to_path_buf).unwrap_or_default();
    let state_dir = state_dir_of(&raw, path);
    let mut services = BTreeMap::new();
    for (name, svc) in raw.services {
        let resolved = resolve_service(&ctx, "services", &name, svc, &base)?;
        services.insert(name, Arc::new(resolved));
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
    let queue = crate::queue::resolve(&ctx, raw.queue)?;
    let node = crate::node::resolve(&ctx, raw.node)?;
    let http = raw
        .http
        .map(|h| crate::http::resolve(&ctx, h))
        .transpose()?;
    Ok(Config {
        path: abs_path,
        state_dir,
        reserve_memory: raw.reserve_memory,
        services,
        pipelines,
        gateway,
        queue,
        node,
        http,
    })
}

/// Checks `depends_on` across the whole file: names exist, no service waits on itself,
/// no cycle, and every condition can be met.
fn check_graph(ctx: &Ctx, services: &BTreeMap<String, Arc<Service>>) -> Result<(), ConfigError> {
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
