//! Restart delays and crash-loop detection: pure decisions, fed with times and exits.

use std::collections::VecDeque;
use std::time::{Duration, Instant};
use steward_config::{Backoff, CrashLoop};
use steward_events::ExitClass;

/// What to do after an exit.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartDecision {
    pub delay: Duration,
    /// Set when this exit made (or kept) the service a crash loop.
    pub crash_loop: Option<CrashLoopReport>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CrashLoopReport {
    pub exits: u32,
    pub window: Duration,
    pub last: Vec<ExitClass>,
}

/// The shortest wait between restarts of a service in a crash loop, whatever its
/// `backoff` says (as systemd's minimum `RestartSec`): `backoff = { max = "0s" }` must not
/// restart a failing service tens of times a second.
pub const CRASH_LOOP_FLOOR: Duration = Duration::from_secs(1);

/// Tracks one service's exits: exponential backoff that resets after a healthy run, and a
/// sliding window of exits for crash-loop detection.
#[derive(Debug)]
pub struct RestartTracker {
    backoff: Backoff,
    crash: CrashLoop,
    /// Failed runs in a row since the last healthy one.
    consecutive: u32,
    window: VecDeque<(Instant, ExitClass)>,
}

impl RestartTracker {
    pub fn new(backoff: Backoff, crash: CrashLoop) -> Self {
        RestartTracker {
            backoff,
            crash,
            consecutive: 0,
            window: VecDeque::new(),
        }
    }

    /// Records an exit after a run of `ran`, and decides the delay. `random` is in 0..1
    /// (taken as an argument so tests are deterministic).
    pub fn on_exit(
        &mut self,
        now: Instant,
        ran: Duration,
        class: ExitClass,
        random: f64,
    ) -> RestartDecision {
        if ran >= self.backoff.reset_after.0 {
            self.consecutive = 0;
            self.window.clear();
        }
        self.window.push_back((now, class));
        while let Some((t, _)) = self.window.front() {
            if now.duration_since(*t) > self.crash.window.0 {
                self.window.pop_front();
            } else {
                break;
            }
        }
        let in_loop = self.window.len() as u32 > self.crash.exits;
        // In a crash loop every retry waits the max: as if it were the 32nd in a row.
        let n = if in_loop { u32::MAX } else { self.consecutive };
        self.consecutive = self.consecutive.saturating_add(1);
        let delay = self.backoff.delay(n, random);
        RestartDecision {
            delay: if in_loop {
                delay.max(CRASH_LOOP_FLOOR)
            } else {
                delay
            },
            crash_loop: in_loop.then(|| CrashLoopReport {
                exits: self.window.len() as u32,
                window: self.crash.window.0,
                last: self
                    .window
                    .iter()
                    .rev()
                    .take(5)
                    .map(|(_, c)| c.clone())
                    .collect(),
            }),
        }
    }

    /// A healthy run (long enough, or health checks passing) clears the history.
    pub fn reset(&mut self) {
        self.consecutive = 0;
        self.window.clear();
    }

    pub fn in_crash_loop(&self) -> bool {
        self.window.len() as u32 > self.crash.exits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward_config::HumanDuration;

    fn tracker(exits: u32) -> RestartTracker {
        RestartTracker::new(
            Backoff {
                initial: HumanDuration::millis(100),
                max: HumanDuration::millis(800),
                jitter: 0.5,
                reset_after: HumanDuration::secs(10),
            },
            CrashLoop {
                exits,
                window: HumanDuration::secs(60),
            },
        )
    }

    #[test]
    fn doubles_up_to_max_then_resets_after_a_healthy_run() {
        let mut t = tracker(100);
        let start = Instant::now();
        let fail = ExitClass::Exited { code: 1 };
        let delays: Vec<u128> = (0..6)
            .map(|i| {
                t.on_exit(
                    start + Duration::from_secs(i),
                    Duration::from_millis(5),
                    fail.clone(),
                    0.0,
                )
                .delay
                .as_millis()
            })
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 800, 800]);
        let after_healthy = t.on_exit(
            start + Duration::from_secs(30),
            Duration::from_secs(11),
            fail,
            0.0,
        );
        assert_eq!(after_healthy.delay, Duration::from_millis(100));
    }

    #[test]
    fn a_crash_loop_waits_at_least_a_second_even_with_zero_backoff() {
        let mut t = RestartTracker::new(
            Backoff {
                initial: HumanDuration::millis(0),
                max: HumanDuration::millis(0),
                jitter: 0.0,
                reset_after: HumanDuration::secs(10),
            },
            CrashLoop {
                exits: 3,
                window: HumanDuration::secs(60),
            },
        );
        let start = Instant::now();
        let delays: Vec<Duration> = (0..6)
            .map(|i| {
                t.on_exit(
                    start + Duration::from_millis(i),
                    Duration::ZERO,
                    ExitClass::Exited { code: 1 },
                    0.0,
                )
                .delay
            })
            .collect();
        assert_eq!(&delays[..3], &[Duration::ZERO; 3], "quick restarts first");
        assert!(
            delays[3..].iter().all(|d| *d == CRASH_LOOP_FLOOR),
            "{delays:?}"
        );
    }

    #[test]
    fn jitter_only_shortens() {
        let b = Backoff {
            initial: HumanDuration::millis(800),
            max: HumanDuration::millis(800),
            jitter: 0.5,
            reset_after: HumanDuration::secs(1),
        };
        assert_eq!(b.delay(0, 1.0), Duration::from_millis(400));
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(800));
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_millis(800));
    }

    #[test]
    fn more_than_n_exits_in_window_is_a_crash_loop_at_max_backoff() {
        let mut t = tracker(3);
        let start = Instant::now();
        for i in 0..3 {
            let d = t.on_exit(
                start + Duration::from_millis(i),
                Duration::ZERO,
                ExitClass::Exited { code: 2 },
                0.0,
            );
            assert!(d.crash_loop.is_none());
        }
        let d = t.on_exit(
            start + Duration::from_millis(4),
            Duration::ZERO,
            ExitClass::signaled(9),
            0.0,
        );
        let report = d
            .crash_loop
            .expect("fourth exit within the window is a crash loop");
        assert_eq!(report.exits, 4);
        assert_eq!(report.last[0], ExitClass::signaled(9));
        // The max backoff (800 ms), raised to the crash-loop floor.
        assert_eq!(d.delay, CRASH_LOOP_FLOOR);
        // Exits that have slid out of the window no longer count.
        let later = t.on_exit(
            start + Duration::from_secs(120),
            Duration::ZERO,
            ExitClass::Exited { code: 2 },
            0.0,
        );
        assert!(later.crash_loop.is_none());
    }
}
