//! What an instance's task says about its runs: each exit in state at once and in events
//! with `explain`'s reading of a failure (read beside the next run), and each finding in
//! the output while it runs (a fatal one ends the run).

use super::explaining::Explained;
use super::task::{Phase, Task, Then};
use crate::classify::KilledBy;
use crate::execution::Ended;
use std::time::{Duration, Instant, SystemTime};
use steward_config::OnFatalFinding;
use steward_events::{EventKind, ExitClass};

/// How much of a crashed process's output `explain` reads.
const EXPLAIN_TAIL: u64 = 64 * 1024;

impl Task {
    /// The exit in state at once, and in events once its explanation is read: a failure
    /// is explained (its output's tail and the kernel's lines) on the blocking pool while
    /// the task goes on to restart it.
    pub(super) fn record_end(&mut self, ended: &Ended) {
        if !ended.strays.is_empty() {
            self.emit(EventKind::StrayKilled {
                pids: ended.strays.iter().map(|&p| p as u32).collect(),
            });
        }
        self.ctx.exited(&self.inst.name, &ended.class);
        self.exits += 1;
        let class = ended.class.clone();
        self.set(|s| {
            s.cgroup = None;
            s.health = None;
            s.last_explain = None;
            s.pid = None;
            s.ready = false;
            s.waiting_on = None;
            s.last_exit = Some(class);
        });
        let event = EventKind::Exited {
            pid: ended.pid as u32,
            class: ended.class.clone(),
            ran_ms: ended.ran.as_millis() as u64,
            peak_memory: ended.peak_memory,
            explain: None,
        };
        let at = SystemTime::now();
        if ended.class.is_failure() && ended.class != ExitClass::Stopped {
            let read = self.reading_of(ended);
            self.explaining.push(event, at, self.exits, read);
        } else if self.explaining.is_empty() {
            self.emit(event);
        } else {
            // Behind the exits still being explained, so that exits are written in order.
            self.explaining.push(event, at, self.exits, || None);
        }
    }

    /// How the crash is read, the way an on-call engineer would: the last of its output
    /// (taken now, before the next run writes to the same log), and the kernel's view of
    /// the same minutes (an OOM kill, a segfault in libcuda, an Xid).
    fn reading_of(&self, ended: &Ended) -> impl FnOnce() -> Option<String> + Send + 'static {
        let mut text = self
            .logs
            .lock()
            .map(|l| l.tail(EXPLAIN_TAIL))
            .unwrap_or_default();
        let kernel = self.ctx.kernel.clone();
        let group = format!("steward-{}/{}", self.ctx.agent_id, self.inst.name);
        let (within, pid) = (ended.ran + Duration::from_secs(5), ended.pid);
        move || {
            text.extend(kernel.recent(within, pid, &group));
            steward_explain::explain_text(&text).one_line()
        }
    }

    /// An exit's explanation is ready: its event is written, and `ps` shows the reading
    /// unless a newer exit has happened since.
    pub(super) fn explained(&mut self, done: Explained) {
        if done.exit_number == self.exits && done.explain.is_some() {
            self.set(|s| s.last_explain.clone_from(&done.explain));
        }
        self.ctx.emit_at(done.at, Some(&self.inst.name), done.event);
    }

    /// Writes every exit still being explained (the task is ending).
    pub(super) async fn explain_the_rest(&mut self) {
        while !self.explaining.is_empty() {
            let done = self.explaining.next().await;
            self.explained(done);
        }
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
        self.set(|s| {
            s.last_finding = Some(Box::new((f, Instant::now(), std::time::SystemTime::now())))
        });
        if restart {
            self.end_run(Some(KilledBy::FatalFinding), Then::Decide)
                .await;
        }
    }
}
