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
    job: JoinHandle<Option<String>>,
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
    /// Explains one exit on the blocking pool with `read`.
    pub fn start(
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
            job: tokio::task::spawn_blocking(read),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The oldest exit, once its explanation is ready; pending while there is none.
    /// Cancel-safe: the job stays queued until it has answered.
    pub async fn next(&mut self) -> Explained {
        let Some(front) = self.0.front_mut() else {
            return std::future::pending().await;
        };
        // A panic in the explanation loses the reading, never the exit's event.
        let explain = (&mut front.job).await.ok().flatten();
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
