//! What this agent tells the fleet about itself: its node name, host, pid, version, the
//! GPUs its plan uses, and its job slots.

use std::sync::Arc;
use steward_config::Config;
use steward_plan::Instance;
use steward_queue::NodeInfo;

pub fn node_info(config: &Config, instances: &[Arc<Instance>]) -> NodeInfo {
    let mut gpus: Vec<String> = instances
        .iter()
        .filter_map(|i| i.gpu.as_ref().map(|g| g.uuid.clone()))
        .collect();
    gpus.sort();
    gpus.dedup();
    let slots = config
        .pipelines
        .values()
        .map(|p| p.workers.replicas * p.concurrency)
        .sum();
    NodeInfo {
        name: config.node.name.clone(),
        run: String::new(),
        host: steward_config::hostname(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        gpus,
        services_up: 0,
        services_total: config.services.len() as u32,
        slots,
    }
}
