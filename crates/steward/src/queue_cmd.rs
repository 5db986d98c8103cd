//! `steward queue …`: straight on STATE_DIR/queue.db. SQLite's locking lets these run
//! beside an agent that is using the same file.

use crate::cli::{KeyKind, QueueCommand, Target};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use steward_queue::{InputKey, JobFilter, JobState, JobStore, SqliteStore};

pub fn db_path(state_dir: &Path) -> PathBuf {
    state_dir.join("queue.db")
}

pub fn open(state_dir: &Path) -> Result<SqliteStore> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create the state dir {}", state_dir.display()))?;
    Ok(SqliteStore::open(&db_path(state_dir))?)
}

fn state(s: &Option<String>) -> Result<Option<JobState>> {
    s.as_deref()
        .map(str::parse)
        .transpose()
        .map_err(anyhow::Error::msg)
}

pub fn run(target: &Target, command: QueueCommand) -> Result<ExitCode> {
    let dir = crate::target::state_dir(target)?;
    if let QueueCommand::Restore { backup } = &command {
        let used = steward_queue::restore(&db_path(&dir), backup.as_deref())?;
        let q = open(&dir)?;
        let stats = q.stats(None)?;
        println!(
            "restored {} ({} jobs)",
            used.display(),
            stats.counts.values().sum::<u64>()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let q = open(&dir)?;
    match command {
        QueueCommand::Add {
            queue,
            paths,
            glob,
            key,
            max_attempts,
            priority,
        } => {
            let how = match key {
                KeyKind::Content => InputKey::Content,
                KeyKind::Path => InputKey::Path,
            };
            let summary = add(
                &q,
                &queue,
                &paths,
                glob.as_deref(),
                how,
                max_attempts,
                priority,
            )?;
            println!("{summary}");
        }
        QueueCommand::Stats { queue, json } => {
            let s = q.stats(queue.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                let counts: Vec<String> =
                    s.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
                println!(
                    "{}: {}",
                    queue.as_deref().unwrap_or("all queues"),
                    counts.join(", ")
                );
                println!(
                    "rate: {} succeeded in the last minute; ETA {}",
                    s.succeeded_last_minute,
                    s.eta_seconds
                        .map_or("unknown".into(), |e| humantime::format_duration(
                            std::time::Duration::from_secs(e)
                        )
                        .to_string())
                );
                if let Some(j) = s.oldest_running {
                    let age = steward_queue::now_ms() - j.started_at.unwrap_or(j.updated_at);
                    println!(
                        "oldest running: job {} ({}) for {}s, held by {}",
                        j.id,
                        j.input().unwrap_or(&j.key),
                        age / 1000,
                        j.lease_owner.as_deref().unwrap_or("?")
                    );
                }
            }
        }
        QueueCommand::Ls {
            queue,
            state: st,
            limit,
            json,
        } => {
            let jobs = q.list(&JobFilter {
                queue,
                state: state(&st)?,
                limit: Some(limit),
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                let mut t = comfy_table::Table::new();
                t.load_preset(comfy_table::presets::NOTHING);
                t.set_header(["ID", "QUEUE", "STATE", "ATTEMPTS", "INPUT", "LAST ERROR"]);
                for j in jobs {
                    t.add_row([
                        j.id.to_string(),
                        j.queue.clone(),
                        j.state.to_string(),
                        format!("{}/{}", j.attempts, j.max_attempts),
                        j.input().unwrap_or(&j.key).to_string(),
                        j.last_error.clone().unwrap_or_default(),
                    ]);
                }
                println!("{t}");
            }
        }
        QueueCommand::Show { id, json } => {
            let Some((job, attempts)) = q.get(id)? else {
                bail!("no job {id} in {}", db_path(&dir).display())
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "job": job, "attempts": attempts })
                    )?
                );
            } else {
                println!(
                    "job {} in {}: {} ({}/{} attempts)",
                    job.id, job.queue, job.state, job.attempts, job.max_attempts
                );
                println!("  input: {}", job.input().unwrap_or("-"));
                println!("  key:   {}", job.key);
                if let Some(e) = &job.last_error {
                    println!("  last error: {e}");
                }
                for a in attempts {
                    println!(
                        "  attempt {} by {}: {}{}",
                        a.n,
                        a.owner.as_deref().unwrap_or("?"),
                        a.class.map_or("?".into(), |c| c.to_string()),
                        a.error.map(|e| format!(" ({e})")).unwrap_or_default()
                    );
                    if let Some(tail) = a.stderr_tail.filter(|t| !t.trim().is_empty()) {
                        for line in tail
                            .lines()
                            .rev()
                            .take(5)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                        {
                            println!("      | {line}");
                        }
                    }
                }
            }
        }
        QueueCommand::Retry {
            id,
            state: st,
            queue,
        } => {
            let n = match (id, state(&st)?) {
                (Some(id), None) => q.set_state(vec![id], JobState::Pending)?,
                (None, Some(from)) => q.retry_state(queue, from)?,
                _ => bail!("give a job id, or --state S (e.g. --state quarantined)"),
            };
            println!("{n} job(s) back to pending");
        }
        QueueCommand::Cancel { ids } => println!("{} job(s) cancelled", q.cancel(ids)?),
        QueueCommand::Purge {
            state: st,
            older_than,
        } => {
            let st: JobState = st.parse().map_err(anyhow::Error::msg)?;
            let age = humantime::parse_duration(&older_than).with_context(|| {
                format!("--older-than {older_than:?} is not a duration such as \"7d\"")
            })?;
            println!("{} job(s) purged", q.purge(st, age.as_millis() as i64)?);
        }
        QueueCommand::RebuildDone {
            queue,
            outputs,
            pattern,
            requeue_missing,
        } => {
            rebuild_done(&q, &queue, &outputs, &pattern, requeue_missing)?;
        }
        QueueCommand::Export {
            csv,
            json: _,
            queue,
        } => {
            let jobs = q.list(&JobFilter {
                queue,
                state: None,
                limit: None,
            })?;
            let mut out = std::io::stdout().lock();
            if csv {
                writeln!(out, "id,queue,state,attempts,max_attempts,input,key,last_error,created_at,finished_at")?;
                for j in jobs {
                    let field = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
                    writeln!(
                        out,
                        "{},{},{},{},{},{},{},{},{},{}",
                        j.id,
                        field(&j.queue),
                        j.state,
                        j.attempts,
                        j.max_attempts,
                        field(j.input().unwrap_or("")),
                        field(&j.key),
                        field(j.last_error.as_deref().unwrap_or("")),
                        j.created_at,
                        j.finished_at.map_or(String::new(), |t| t.to_string())
                    )?;
                }
            } else {
                for j in jobs {
                    writeln!(out, "{}", serde_json::to_string(&j)?)?;
                }
            }
        }
        QueueCommand::Backup => {
            let path = steward_queue::backup(&q, 10)?;
            println!("backup written: {}", path.display());
        }
        QueueCommand::Restore { .. } => bail!("restore runs before the queue is opened"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Walks, hashes in parallel, inserts in batches; a progress bar on a terminal.
pub fn add(
    q: &SqliteStore,
    queue: &str,
    paths: &[PathBuf],
    glob: Option<&str>,
    how: InputKey,
    max_attempts: u32,
    priority: i64,
) -> Result<String> {
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} files, {per_sec}, ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let spec = steward_queue::FileJobs {
        queue,
        paths,
        glob,
        key: how,
        max_attempts,
        priority,
    };
    let summary = steward_queue::enqueue_files(q, &spec, &progress)?;
    bar.finish_and_clear();
    for u in summary.unreadable.iter().take(10) {
        eprintln!("skipped: {u}");
    }
    Ok(format!("{queue}: {summary}"))
}

fn rebuild_done(
    q: &SqliteStore,
    queue: &str,
    outputs: &Path,
    pattern: &str,
    requeue: bool,
) -> Result<()> {
    steward_config::template::check(pattern).map_err(anyhow::Error::msg)?;
    let jobs = q.list(&JobFilter {
        queue: Some(queue.to_string()),
        state: None,
        limit: None,
    })?;
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for j in &jobs {
        let Some(input) = j.input() else { continue };
        let vars = steward_config::template::vars_for(Path::new(input), outputs, j.id, j.attempts);
        let out = outputs
            .join(steward_config::template::render(pattern, &vars).map_err(anyhow::Error::msg)?);
        let present = std::fs::metadata(&out).is_ok_and(|m| m.len() > 0);
        match (j.state, present) {
            (JobState::Succeeded, false) => missing.push((j.id, out)),
            (JobState::Succeeded, true) | (JobState::Cancelled, _) => {}
            (_, true) => found.push(j.id),
            _ => {}
        }
    }
    let marked = q.set_state(found, JobState::Succeeded)?;
    println!("{queue}: {marked} job(s) marked succeeded (their output exists)");
    if !missing.is_empty() {
        println!("{} job(s) marked succeeded have no output:", missing.len());
        for (id, out) in missing.iter().take(20) {
            println!("  job {id}: {} is missing or empty", out.display());
        }
        if requeue {
            let n = q.set_state(missing.iter().map(|m| m.0).collect(), JobState::Pending)?;
            println!("{n} job(s) requeued");
        } else {
            println!("requeue them with --requeue-missing");
        }
    }
    Ok(())
}
