//! `steward nodes`: the fleet that shares this config's queue, as the queue sees it.

use crate::cli::Target;
use crate::fmt::short_duration;
use crate::store::{self, Access, Location};
use anyhow::{Context, Result};
use comfy_table::{presets, Table};
use std::process::ExitCode;
use std::time::Duration;
use steward_queue::NodeRow;

pub fn run(target: &Target, json: bool) -> Result<ExitCode> {
    let location = Location::of_target(target)?;
    // The TTL that decides alive or dead is the config's, when there is one.
    let ttl = steward_config::load(&target.file())
        .map(|c| c.node.ttl.0)
        .unwrap_or(Duration::from_secs(30));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let nodes = runtime.block_on(async {
        let q = store::open(&location, Access::Existing).await?;
        anyhow::Ok(q.nodes(ttl).await?)
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
    } else {
        print(&nodes);
    }
    Ok(ExitCode::SUCCESS)
}

fn state(n: &NodeRow) -> &'static str {
    match (n.alive, n.stopped) {
        (true, _) => "alive",
        (false, true) => "stopped",
        (false, false) => "dead",
    }
}

fn print(nodes: &[NodeRow]) {
    if nodes.is_empty() {
        println!("no node has joined this queue yet (an agent joins when it runs pipelines or has [queue] url)");
        return;
    }
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header([
        "NODE",
        "STATE",
        "LEADER",
        "HEARTBEAT",
        "HOST",
        "PID",
        "GPUS",
        "SERVICES",
        "JOBS",
        "SLOTS",
        "VERSION",
    ]);
    for n in nodes {
        t.add_row([
            n.info.name.clone(),
            state(n).to_string(),
            if n.leader { "yes" } else { "-" }.to_string(),
            format!(
                "{} ago",
                short_duration(Duration::from_millis(n.heartbeat_age_ms.max(0) as u64))
            ),
            n.info.host.clone(),
            n.info.pid.to_string(),
            n.info.gpus.len().to_string(),
            format!("{}/{}", n.info.services_up, n.info.services_total),
            n.jobs_running.to_string(),
            n.info.slots.to_string(),
            n.info.version.clone(),
        ]);
    }
    println!("{t}");
    let alive = nodes.iter().filter(|n| n.alive).count();
    println!("{alive} of {} node(s) alive", nodes.len());
}
