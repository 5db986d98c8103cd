//! `steward queue …`: the queue of a state dir, through the `JobStore` seam, with or
//! without an agent running beside it (the store's own locking keeps them consistent).

use crate::cli::{KeyKind, QueueCommand, Target};
use crate::store::{self, Access, Location};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use steward_queue::{InputKey, JobFilter, JobState, JobStore, Selection};

fn state(s: &Option<String>) -> Result<Option<JobState>> {
    s.as_deref()
        .map(str::parse)
        .transpose()
        .map_err(anyhow::Error::msg)
}

pub fn run(target: &Target, command: QueueCommand) -> Result<ExitCode> {
    let location = Location::of_target(target)?;
    // Before the queue is opened: the file it replaces may be damaged.
    let restored = match (&command, &location) {
        (QueueCommand::Restore { backup }, Location::Sqlite(dir)) => {
            Some(steward_queue::restore(&dir.queue_db(), backup.as_deref())?)
        }
        (QueueCommand::Restore { .. }, Location::Postgres { url, .. }) => bail!(
            "the queue is in PostgreSQL ({url}); restoring it is PostgreSQL's job: pg_restore from a pg_dump, or point-in-time recovery. `steward queue restore` restores the embedded SQLite queue"
        ),
        _ => None,
    };
    let access = match command {
        QueueCommand::Add { .. } => Access::Create,
        _ => Access::Existing,
    };
    let command = match command {
        QueueCommand::Add {
            queue,
            paths,
            glob,
            key,
            max_attempts,
            priority,
            force,
        } => QueueCommand::Add {
            max_attempts: Some(attempts_for(target, &queue, max_attempts, force)?),
            queue,
            paths,
            glob,
            key,
            priority,
            force,
        },
        other => other,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let q = store::open(&location, access).await?;
        if let Some(used) = restored {
            let jobs = q.stats(None).await?.counts.total();
            println!("restored {} ({jobs} jobs)", used.display());
            return Ok(ExitCode::SUCCESS);
        }
        run_on(q.as_ref(), command).await
    })
}

async fn run_on(q: &dyn JobStore, command: QueueCommand) -> Result<ExitCode> {
    match command {
        QueueCommand::Add {
            queue,
            paths,
            glob,
            key,
            max_attempts,
            priority,
            force: _,
        } => {
            let max_attempts = max_attempts.unwrap_or(DEFAULT_ATTEMPTS);
            let how = match key {
                KeyKind::Content => InputKey::Content,
                KeyKind::Path => InputKey::Path,
            };
            let summary = add(
                q,
                &queue,
                &paths,
                glob.as_deref(),
                how,
                max_attempts,
                priority,
            )
            .await?;
            println!("{summary}");
        }
        QueueCommand::Stats { queue, json } => stats(q, queue.as_deref(), json).await?,
        QueueCommand::Ls {
            queue,
            state: st,
            search,
            limit,
            json,
        } => {
            let jobs = q
                .list(&JobFilter {
                    queue,
                    state: state(&st)?,
                    text: search,
                    limit: Some(limit),
                })
                .await?;
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
        QueueCommand::Show { id, json } => show(q, id, json).await?,
        QueueCommand::Retry {
            id,
            state: st,
            queue,
        } => {
            let which = match (id, state(&st)?) {
                (Some(id), None) => Selection::Ids(vec![id]),
                (None, Some(from)) => Selection::Matching(JobFilter {
                    queue,
                    state: Some(from),
                    ..Default::default()
                }),
                _ => bail!("give a job id, or --state S (e.g. --state quarantined)"),
            };
            println!("{} job(s) back to pending", q.retry(which).await?);
        }
        QueueCommand::Cancel { ids } => {
            println!("{} job(s) cancelled", q.cancel(Selection::Ids(ids)).await?)
        }
        QueueCommand::Purge {
            state: st,
            older_than,
        } => {
            let st: JobState = st.parse().map_err(anyhow::Error::msg)?;
            let age = humantime::parse_duration(&older_than).with_context(|| {
                format!("--older-than {older_than:?} is not a duration such as \"7d\"")
            })?;
            println!("{} job(s) purged", q.purge(st, age).await?);
        }
        QueueCommand::RebuildDone {
            queue,
            outputs,
            pattern,
            requeue_missing,
        } => {
            let r =
                steward_queue::rebuild_done(q, &queue, &outputs, &pattern, requeue_missing).await?;
            println!(
                "{queue}: {} job(s) marked succeeded (their output exists)",
                r.marked
            );
            if !r.missing.is_empty() {
                println!(
                    "{} job(s) marked succeeded have no output:",
                    r.missing.len()
                );
                for (id, out) in r.missing.iter().take(20) {
                    println!("  job {id}: {} is missing or empty", out.display());
                }
                if requeue_missing {
                    println!("{} job(s) requeued", r.requeued);
                } else {
                    println!("requeue them with --requeue-missing");
                }
            }
        }
        QueueCommand::Export {
            csv,
            json: _,
            queue,
        } => export(q, queue, csv).await?,
        QueueCommand::Backup => {
            let path = q.backup(10).await?;
            println!("backup written: {}", path.display());
        }
        // Done in `run`, before the queue opens.
        QueueCommand::Restore { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Attempts when neither the command nor a pipeline says.
const DEFAULT_ATTEMPTS: u32 = 3;

/// The attempts a new job of `queue` gets: `--max-attempts`, else the max_attempts of the
/// pipeline that takes jobs from it. A queue no pipeline takes is refused (a typo would
/// leave its jobs pending forever) unless `force`.
fn attempts_for(target: &Target, queue: &str, given: Option<u32>, force: bool) -> Result<u32> {
    let config = match steward_config::load(&target.file()) {
        Ok(c) => c,
        Err(_) if force => return Ok(given.unwrap_or(DEFAULT_ATTEMPTS)),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(
                "cannot tell which queues the config's pipelines take; give the config with -f FILE, or --force",
            ))
        }
    };
    match config.pipelines.values().find(|p| p.queue == queue) {
        Some(p) => Ok(given.unwrap_or(p.max_attempts)),
        None if force => Ok(given.unwrap_or(DEFAULT_ATTEMPTS)),
        None => {
            let known: Vec<&str> = config
                .pipelines
                .values()
                .map(|p| p.queue.as_str())
                .collect();
            bail!(
                "no pipeline of {} takes jobs from queue {queue:?} (its pipelines take: {}); enqueue into one of those, or add --force",
                config.path.display(),
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )
        }
    }
}

async fn stats(q: &dyn JobStore, queue: Option<&str>, json: bool) -> Result<()> {
    let s = q.stats(queue).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    let counts: Vec<String> = JobState::ALL
        .iter()
        .map(|st| format!("{st} {}", s.counts.of(*st)))
        .collect();
    println!("{}: {}", queue.unwrap_or("all queues"), counts.join(", "));
    println!(
        "rate: {} succeeded in the last minute; ETA {}",
        s.succeeded_last_minute,
        s.eta_seconds.map_or("unknown".into(), |e| {
            humantime::format_duration(Duration::from_secs(e)).to_string()
        })
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
    Ok(())
}

async fn show(q: &dyn JobStore, id: i64, json: bool) -> Result<()> {
    let Some((job, attempts)) = q.get(id).await? else {
        bail!("no job {id} in {}", q.describe())
    };
    if json {
        let doc = serde_json::json!({ "job": job, "attempts": attempts });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
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
            let lines: Vec<&str> = tail.lines().rev().take(5).collect();
            for line in lines.into_iter().rev() {
                println!("      | {line}");
            }
        }
    }
    Ok(())
}

async fn export(q: &dyn JobStore, queue: Option<String>, csv: bool) -> Result<()> {
    let jobs = q
        .list(&JobFilter {
            queue,
            ..Default::default()
        })
        .await?;
    let mut out = std::io::stdout().lock();
    if !csv {
        for j in jobs {
            writeln!(out, "{}", serde_json::to_string(&j)?)?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "id,queue,state,attempts,max_attempts,input,key,last_error,created_at,finished_at"
    )?;
    let field = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    for j in jobs {
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
    Ok(())
}

/// Walks, hashes in parallel, inserts in batches; a progress bar on a terminal.
async fn add(
    q: &dyn JobStore,
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
    let summary = steward_queue::enqueue_files(q, &spec, &progress).await?;
    bar.finish_and_clear();
    for u in summary.unreadable.iter().take(10) {
        eprintln!("skipped: {u}");
    }
    Ok(format!("{queue}: {summary}"))
}
