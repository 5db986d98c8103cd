//! The CLI commands other than `up`: thin clients of the agent, and readers of the state dir.

use crate::cli::{Command, ConfigCommand, Target};
use crate::fmt::short_duration;
use crate::{agent, target};
use anyhow::{bail, Context, Result};
use comfy_table::{presets, Table};
use std::process::ExitCode;
use std::time::Duration;
use steward_api::ServiceStatus;
use steward_api::{Client, PsReply, Request};
use steward_config::StateDir;
use steward_events::fmt_bytes;

pub fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Up {
            target,
            detach,
            force,
            sysroot,
        } => {
            let config = target::config(&target)?;
            if detach {
                agent::run_detached(
                    &config,
                    &target.file(),
                    target.state_dir.is_some(),
                    sysroot.as_deref(),
                    force,
                )?;
            } else {
                let flag = target.state_dir.is_some();
                agent::run_foreground(
                    config,
                    flag,
                    sysroot.as_deref(),
                    force,
                    agent::Until::Stopped,
                )?;
            }
        }
        Command::Run {
            target,
            until_empty,
            force,
            sysroot,
        } => {
            if !until_empty {
                anyhow::bail!("`steward run` needs --until-empty (to keep draining queues as they fill, use `steward up`)");
            }
            let config = target::config(&target)?;
            if config.pipelines.is_empty() {
                anyhow::bail!(
                    "{} has no [pipelines.NAME]; there is nothing to run until empty",
                    config.path.display()
                );
            }
            let flag = target.state_dir.is_some();
            let outcome = agent::run_foreground(
                config,
                flag,
                sysroot.as_deref(),
                force,
                agent::Until::Drained,
            )?;
            return Ok(print_run_summary(&outcome));
        }
        Command::Gateway { target } => {
            let config = target::config(&target)?;
            agent::run_gateway_only(config)?;
        }
        Command::Host { node } => return crate::report::host(&node),
        Command::Plan { node } => return crate::report::plan(&node),
        Command::Doctor { node, no_dns } => return crate::report::doctor(&node, no_dns),
        Command::Down { target } => {
            let dir = target::state_dir(&target)?;
            match request(&dir, &Request::Down) {
                Ok(_) => println!("stopped every service and the agent"),
                Err(e) if no_agent(&e) => down_dead_agent(&dir)?,
                Err(e) => return Err(e),
            }
        }
        Command::Ps {
            target,
            json,
            ready,
        } => ps(&target, json, ready)?,
        Command::Reload { target } => {
            let reply = request(&target::state_dir(&target)?, &Request::Reload)?;
            let Some(r) = reply.reload else {
                bail!("the agent answered `reload` without saying what it did");
            };
            let list = |v: &[String]| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.join(", ")
                }
            };
            println!(
                "reloaded: started {}; stopped {}; restarted {}; {} unchanged",
                list(&r.started),
                list(&r.stopped),
                list(&r.restarted),
                r.unchanged.len()
            );
            if !r.not_applied.is_empty() {
                println!(
                    "not applied, they take `steward down` and `steward up`: {}",
                    r.not_applied.join(", ")
                );
            }
        }
        Command::Start { service, target } => {
            request(
                &target::state_dir(&target)?,
                &Request::Start {
                    service: service.clone(),
                },
            )?;
            println!("{service}: started");
        }
        Command::Stop { service, target } => {
            request(
                &target::state_dir(&target)?,
                &Request::Stop {
                    service: service.clone(),
                },
            )?;
            println!("{service}: stopped");
        }
        Command::Restart { service, target } => {
            request(
                &target::state_dir(&target)?,
                &Request::Restart {
                    service: service.clone(),
                },
            )?;
            println!("{service}: restarted");
        }
        Command::Logs {
            service,
            file,
            state_dir,
            tail,
            follow,
        } => {
            let dir = target::state_dir(&Target { file, state_dir })?;
            logs(&dir, &service, tail, follow)?;
        }
        Command::Queue { target, command } => return crate::queue_cmd::run(&target, command),
        Command::Nodes { target, json } => return crate::nodes_cmd::run(&target, json),
        Command::Explain {
            files,
            runs,
            target,
            json,
            top,
            since,
        } => {
            let sources = crate::explain_cmd::Sources {
                args: &files,
                target: &target,
                runs: runs as usize,
            };
            return crate::explain_cmd::run(&sources, json, top as usize, since.as_deref());
        }
        Command::Import {
            files,
            output,
            force,
            json,
            strict,
            no_collapse,
        } => {
            let options = crate::import_cmd::ImportOptions {
                output,
                force,
                json,
                strict,
                collapse: !no_collapse,
            };
            return crate::import_cmd::run(&files, &options);
        }
        Command::Config {
            target,
            command:
                ConfigCommand::Check {
                    path,
                    json,
                    no_host,
                    sysroot,
                },
        } => {
            let config = steward_config::load(&path.unwrap_or_else(|| target.file()))?;
            if let Some(url) = &config.queue.url {
                steward_queue::check_pg_url(url.expose(), &url.masked())?;
            }
            if !no_host {
                // What `up` refuses, this refuses.
                agent::preflight(&config, sysroot.as_deref(), false)?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&config)?);
            } else {
                let queue = match &config.queue.url {
                    Some(url) => format!("queue {}", url.masked()),
                    None => "queue in the state dir".to_string(),
                };
                println!(
                    "{}: ok, {} service(s), {} pipeline(s); state dir {}; {queue}",
                    config.path.display(),
                    config.services.len(),
                    config.pipelines.len(),
                    config.state_dir
                );
                for svc in config.services.values() {
                    let mem = svc.memory.map_or("no memory limit".to_string(), |m| {
                        format!("memory {}", m.both())
                    });
                    println!(
                        "  {}: {:?}, restart {}, {mem}",
                        svc.name, svc.argv, svc.restart
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the error says no agent answers on the state dir.
fn no_agent(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<steward_api::ApiError>(),
        Some(steward_api::ApiError::NoAgent { .. })
    )
}

/// `down` when no agent answers: it may have died and left its services running. Under
/// the state dir's lock (so no agent starts meanwhile), they are found and stopped.
fn down_dead_agent(dir: &StateDir) -> Result<()> {
    let _lock = steward_api::StateDirLock::acquire(dir)?;
    let found = steward_supervise::leftovers::find(&dir.agent_id());
    if found.is_empty() {
        bail!("no steward agent is running for {dir}, and none left anything running; nothing to stop");
    }
    let killed = steward_supervise::leftovers::stop(&found);
    let _ = std::fs::remove_file(dir.socket());
    println!(
        "no agent was running for {dir} (it died); stopped the {} process(es) it left ({}) and removed its {} cgroup(s)",
        killed.len(),
        killed.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "),
        found.groups.len()
    );
    Ok(())
}

fn request(state_dir: &StateDir, req: &Request) -> Result<steward_api::Response> {
    let mut client = Client::connect(state_dir)?;
    Ok(client.request(req)?)
}

fn ps(target: &Target, json: bool, ready: bool) -> Result<()> {
    let dir = target::state_dir(target)?;
    let reply = match request(&dir, &Request::Ps) {
        Ok(r) => r,
        Err(e) if no_agent(&e) => {
            let left = steward_supervise::leftovers::find(&dir.agent_id());
            if left.pids.is_empty() {
                return Err(e);
            }
            bail!(
                "no steward agent is running for {dir}, but {} process(es) of its services are still running (pids {}): its agent died. `steward down` stops them; `steward up` stops them and starts afresh",
                left.pids.len(),
                left.pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
            );
        }
        Err(e) => return Err(e),
    };
    let Some(ps) = reply.ps else {
        bail!("the agent answered `ps` without a service list");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&ps)?);
    } else {
        print_ps(&ps);
    }
    let awaited = steward_api::awaited(&ps.services);
    if ready && !awaited.is_empty() {
        bail!("not ready: waiting for {}", awaited.join(", "));
    }
    Ok(())
}

fn print_ps(ps: &PsReply) {
    let with_gpu = ps
        .services
        .iter()
        .any(|s| s.gpu.is_some() || s.gpu_memory_used.is_some());
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    let mut header = vec!["NAME", "STATE", "HEALTH"];
    if with_gpu {
        header.extend(["GPU", "GPU MEMORY"]);
    }
    header.extend([
        "PID",
        "UPTIME",
        "RESTARTS",
        "LAST EXIT",
        "LAST FINDING",
        "MEMORY",
        "LIMITS",
    ]);
    table.set_header(header);
    for s in &ps.services {
        let mut row = vec![
            s.name.clone(),
            state_cell(s),
            s.health.map_or("-".into(), |h| h.to_string()),
        ];
        if with_gpu {
            row.push(s.gpu.map_or("-".into(), |g| g.to_string()));
            row.push(s.gpu_memory_used.map_or("-".into(), |b| fmt_bytes(Some(b))));
        }
        row.extend([
            s.pid.map_or("-".into(), |p| p.to_string()),
            s.uptime_ms
                .map_or("-".into(), |ms| short_duration(Duration::from_millis(ms))),
            s.restarts.to_string(),
            s.last_exit.as_ref().map_or("-".into(), ToString::to_string),
            finding_cell(s),
            memory_cell(s),
            s.enforcement.to_string(),
        ]);
        table.add_row(row);
    }
    println!("{table}");
    for s in &ps.services {
        if let Some(w) = &s.waiting_on {
            println!("{}: waiting for {w}", s.name);
        }
        if let Some(why) = &s.last_explain {
            println!("{}: {}: {why}", s.name, s.state);
        }
        if let Some(f) = &s.last_finding {
            println!("{}: {}: {} — {}", s.name, f.category, f.line, f.fix);
        }
        if let (Some(h), Some(e)) = (s.health, &s.last_health_error) {
            println!("{}: {h}, last check: {e}", s.name);
        }
        if !s.recent_exits.is_empty() {
            let last: Vec<String> = s.recent_exits.iter().map(|c| c.short()).collect();
            println!("{}: crash loop; latest exits: {}", s.name, last.join(", "));
        }
    }
    println!(
        "agent pid {}, up {}, {}; {} orphan(s) reaped",
        ps.agent.pid,
        short_duration(Duration::from_millis(ps.agent.uptime_ms)),
        ps.agent.cgroups,
        ps.agent.orphans_reaped
    );
    if let Some(why) = &ps.agent.kernel_log {
        println!("{why}");
    }
}

/// `gunicorn-worker-timeout x4, 20s ago`.
fn finding_cell(s: &ServiceStatus) -> String {
    s.last_finding.as_ref().map_or("-".into(), |f| {
        format!(
            "{}{} x{}, {} ago",
            if f.fatal { "fatal " } else { "" },
            f.category,
            f.count,
            short_duration(Duration::from_millis(f.age_ms))
        )
    })
}

fn state_cell(s: &ServiceStatus) -> String {
    match s.next_start_in_ms {
        Some(ms) => format!(
            "{} (next start in {})",
            s.state,
            short_duration(Duration::from_millis(ms))
        ),
        None => s.state.to_string(),
    }
}

fn memory_cell(s: &ServiceStatus) -> String {
    match (s.memory_used, s.memory_limit) {
        (None, None) => "-".into(),
        (None, Some(limit)) => format!("- / {}", fmt_bytes(Some(limit))),
        (used, Some(limit)) => format!("{} / {}", fmt_bytes(used), fmt_bytes(Some(limit))),
        (used, None) => fmt_bytes(used),
    }
}

fn logs(state_dir: &StateDir, service: &str, tail: Option<usize>, follow: bool) -> Result<()> {
    let dir = state_dir.service_logs(service);
    if !dir.is_dir() {
        let known: Vec<String> = std::fs::read_dir(state_dir.logs())
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        bail!(
            "no logs for \"{service}\" in {state_dir}; services with logs: {}",
            if known.is_empty() {
                "none yet".to_string()
            } else {
                known.join(", ")
            }
        );
    }
    let mut out = std::io::stdout().lock();
    steward_supervise::output::print_tail(&dir, tail, &mut out)
        .with_context(|| format!("cannot read the logs in {}", dir.display()))?;
    if follow {
        steward_supervise::output::follow(&dir, &mut out)
            .with_context(|| format!("cannot follow the logs in {}", dir.display()))?;
    }
    Ok(())
}

/// The end of `steward run`: what succeeded, what was quarantined and why. Exit 0 only
/// when every job is accounted for (succeeded, quarantined or cancelled).
fn print_run_summary(outcome: &[steward_pipelines::RunSummary]) -> ExitCode {
    let mut lost = 0;
    for s in outcome {
        let c = &s.counts;
        println!(
            "{}: {} succeeded, {} quarantined, {} cancelled; {} pending, {} retrying, {} running",
            s.pipeline, c.succeeded, c.quarantined, c.cancelled, c.pending, c.retrying, c.running
        );
        for (input, why) in &s.quarantined {
            println!("  quarantined {input}: {why}");
        }
        if let Some(why) = &s.stuck {
            println!("{}: cannot make progress: {why}", s.pipeline);
        }
        lost += c.unfinished();
    }
    if lost > 0 {
        println!("{lost} job(s) did not finish");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
