//! One job of a per-job pipeline, as one process: its argv from the pipeline's template,
//! run in its slot with the slot's limits, killed at its timeout (or by the stall watch),
//! and judged: exit 0 with `expect_output` present is success.

use crate::confine::confined;
use crate::readable::unreadable_here;
use crate::reporter::{cannot_run, failure, Reporter};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use steward_config::template;
use steward_events::ExitClass;
use steward_plan::Instance;
use steward_queue::Job;
use steward_supervise::{KillWhen, LogFiles};
use tokio::sync::Notify;

/// Runs `job` in `slot` of `inst` and reports how it ended.
pub async fn run_one(
    reporter: &Reporter,
    inst: &Instance,
    slot: &str,
    logs: &Arc<Mutex<LogFiles>>,
    stall: &Notify,
    job: Job,
) {
    let p = &reporter.pipeline;
    let Some(input) = job.input_path() else {
        reporter
            .report(&job, Err(cannot_run("the payload has no \"input\"")), true)
            .await;
        return;
    };
    if p.confine_inputs {
        if let Err(why) = confined(&input, p) {
            reporter.report(&job, Err(cannot_run(&why)), true).await;
            return;
        }
    }
    let owner = job.lease().map(|l| l.owner).unwrap_or_default();
    if let Some(why) = unreadable_here(&input, &owner) {
        reporter.report(&job, Err(cannot_run(&why)), false).await;
        return;
    }
    let vars = template::vars_for(&input, &p.output_dir, job.id, job.attempts);
    let argv: Result<Vec<std::ffi::OsString>, String> = p
        .command
        .iter()
        .map(|a| template::render(a, &vars))
        .collect();
    let expect = p
        .expect_output
        .as_deref()
        .map(|e| template::render(e, &vars))
        .transpose();
    let (argv, expect) = match (argv, expect) {
        (Ok(a), Ok(e)) => (a, e.map(PathBuf::from)),
        (Err(e), _) | (_, Err(e)) => {
            reporter.report(&job, Err(cannot_run(&e)), true).await;
            return;
        }
    };
    if let Err(e) = std::fs::create_dir_all(&p.output_dir) {
        let why = format!("cannot create {}: {e}", p.output_dir.display());
        reporter.report(&job, Err(cannot_run(&why)), false).await;
        return;
    }
    let kill = KillWhen {
        timeout: p.timeout.0,
        stall,
    };
    let run = reporter
        .ctx
        .run_job(inst, &p.workers, slot, argv, kill, logs)
        .await;
    let tail = Some(run.output_tail.clone()).filter(|t| !t.is_empty());
    let outcome = match (&run.class, &expect) {
        (ExitClass::Exited { code: 0 }, Some(out))
            if !std::fs::metadata(out).is_ok_and(|m| m.len() > 0) =>
        {
            Err(failure(
                run.class.clone(),
                &format!(
                    "exited 0 but its output {} is missing or empty",
                    steward_config::escaped_os(out.as_os_str())
                ),
                tail,
            ))
        }
        (ExitClass::Exited { code: 0 }, _) => Ok(()),
        (class, _) => Err(failure(class.clone(), &class.to_string(), tail)),
    };
    reporter.report(&job, outcome, false).await;
}
