//! Exits whose explanation is being read beside the next run. A restart never waits for
//! analysis: the exit's event is held here, with the explanation running on the blocking
//! pool (its output's tail and the kernel's lines), and written, in the order the exits
//! happened, with the finding in it once that is ready.

use std::collections::VecDeque;
use std::time::SystemTime;
use steward_events::EventKind;
use tokio::task::JoinHandle;

/// One exit's event, waiting for its explanation.
pub(super) struct Explaining {
    /// The `exited` event, its `explain` still empty.
    pub event: EventKind,
    /// When the exit happened: the event's time, whenever it is written.
    pub at: SystemTime,
    /// Which exit of the instance it was (1, 2, …), so that a late answer does not replace
    /// the reading of a newer exit in `ps`.
    pub exit_number: u64,
    job: Job,
}

/// A reading, waiting to be started (once the restart is under way) or running.
enum Job {
    Waiting(Box<dyn FnOnce() -> Option<String> + Send>),
    Running(JoinHandle<Option<String>>),
}

/// An exit event with its explanation in it.
pub(super) struct Explained {
    pub event: EventKind,
    pub at: SystemTime,
    pub exit_number: u64,
    pub explain: Option<String>,
}

/// The exits being explained, oldest first.
#[derive(Default)]
pub(super) struct Pending(VecDeque<Explaining>);

impl Pending {
    /// Queues one exit to be explained with `read`, on the blocking pool once
    /// [`Self::start_waiting`] is called: after the restart, so that not even starting a
    /// thread for it comes first.
    pub fn push(
        &mut self,
        event: EventKind,
        at: SystemTime,
        exit_number: u64,
        read: impl FnOnce() -> Option<String> + Send + 'static,
    ) {
        self.0.push_back(Explaining {
            event,
            at,
            exit_number,
            job: Job::Waiting(Box::new(read)),
        });
    }

    /// Starts every queued reading.
    pub fn start_waiting(&mut self) {
        for e in &mut self.0 {
            if let Job::Waiting(_) = e.job {
                let Job::Waiting(read) =
                    std::mem::replace(&mut e.job, Job::Waiting(Box::new(|| None)))
                else {
                    continue;
                };
                e.job = Job::Running(tokio::task::spawn_blocking(read));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The oldest exit, once its explanation is ready; pending while there is none.
    /// Cancel-safe: the job stays queued until it has answered.
    pub async fn next(&mut self) -> Explained {
        self.start_waiting();
        let Some(front) = self.0.front_mut() else {
            return std::future::pending().await;
        };
        let Job::Running(job) = &mut front.job else {
            return std::future::pending().await;
        };
        // A panic in the explanation loses the reading, never the exit's event.
        let explain = job.await.ok().flatten();
        let Some(Explaining {
            mut event,
            at,
            exit_number,
            ..
        }) = self.0.pop_front()
        else {
            return std::future::pending().await;
        };
        if let EventKind::Exited { explain: e, .. } = &mut event {
            e.clone_from(&explain);
        }
        Explained {
            event,
            at,
            exit_number,
            explain,
        }
    }
}
