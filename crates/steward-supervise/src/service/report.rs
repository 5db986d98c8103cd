//! What an instance's task says about its runs: each exit in events and state with
//! `explain`'s reading of a failure, and each finding in the output while it runs (a fatal
//! one ends the run).

use super::task::{Phase, Task, Then};
use crate::classify::KilledBy;
use crate::execution::Ended;
use crate::kmsg;
use std::time::{Duration, Instant};
use steward_config::OnFatalFinding;
use steward_events::{EventKind, ExitClass};

/// How much of a crashed process's output `explain` reads.
const EXPLAIN_TAIL: u64 = 64 * 1024;

impl Task {
    /// The exit in events and state, with `explain`'s reading of a failure.
    pub(super) fn record_end(&mut self, ended: &Ended) {
        if !ended.strays.is_empty() {
            self.emit(EventKind::StrayKilled {
                pids: ended.strays.iter().map(|&p| p as u32).collect(),
            });
        }
        self.set(|s| {
            s.cgroup = None;
            s.health = None;
        });
        self.ctx.exited(&self.inst.name, &ended.class);
        let explain = (ended.class.is_failure() && ended.class != ExitClass::Stopped)
            .then(|| self.explain(ended))
            .flatten();
        let class = ended.class.clone();
        self.set(|s| {
            s.last_explain = explain.clone();
            s.pid = None;
            s.ready = false;
            s.waiting_on = None;
            s.last_exit = Some(class);
        });
        self.emit(EventKind::Exited {
            pid: ended.pid as u32,
            class: ended.class.clone(),
            ran_ms: ended.ran.as_millis() as u64,
            peak_memory: ended.peak_memory,
            explain,
        });
    }

    /// Reads the crash the way an on-call engineer would: the last of its output, and the
    /// kernel's view of the same minutes (an OOM kill, a segfault in libcuda, an Xid).
    fn explain(&self, ended: &Ended) -> Option<String> {
        let mut text = self
            .logs
            .lock()
            .map(|l| l.tail(EXPLAIN_TAIL))
            .unwrap_or_default();
        let group = format!("steward-{}/{}", self.ctx.agent_id, self.inst.name);
        text.extend(kmsg::recent(
            ended.ran + Duration::from_secs(5),
            ended.pid,
            &group,
        ));
        steward_explain::explain_text(&text).one_line()
    }

    /// A cause (or a fatal signature) in the running output: an event, the `ps` column, and
    /// for a fatal one a restart, unless the service only reports them.
    pub(super) async fn finding(&mut self, f: steward_explain::LiveFinding) {
        self.emit(EventKind::Finding {
            id: f.id.clone(),
            category: f.category.clone(),
            line: f.line.clone(),
            count: f.count,
            total: f.total,
            fatal: f.fatal,
            explain: f.fix.clone(),
        });
        let restart = f.fatal && self.svc.on_fatal_finding == OnFatalFinding::Restart;
        if restart {
            if let Phase::Running(run) = &mut self.phase {
                run.exec.ended_for(&f);
            }
        }
        self.set(|s| s.last_finding = Some((f, Instant::now(), std::time::SystemTime::now())));
        if restart {
            self.end_run(Some(KilledBy::FatalFinding), Then::Decide)
                .await;
        }
    }
}
