//! How did it end? Decided from the evidence at hand, in one pure function.

use steward_events::{ExitClass, OomSource};

/// What the kernel told us through `waitpid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    Exited(i32),
    Signaled(i32),
}

/// Why steward itself ended a run, when it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KilledBy {
    /// A stop or restart was asked for (or the agent is stopping).
    Stop,
    /// Its health checks failed `liveness_failures` times after it had been healthy.
    Unhealthy,
    /// steward's RSS watchdog found it over a soft memory limit.
    Watchdog,
    /// A job ran past its `timeout`.
    Timeout,
    /// Its pipeline stalled and `on_stall = "restart"` killed it.
    Stall,
    /// Its output showed a fatal signature (`Evidence::fatal_finding` says which).
    FatalFinding,
}

/// Everything known at exit time.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub killed_by: Option<KilledBy>,
    /// OOM kills counted in the service's cgroup during this run.
    pub cgroup_oom_kills: u64,
    pub memory_limit: Option<u64>,
    pub memory_peak: Option<u64>,
    /// With `KilledBy::FatalFinding`: the finding's category and line.
    pub fatal_finding: Option<(String, String)>,
}

pub fn classify(outcome: WaitOutcome, ev: &Evidence) -> ExitClass {
    let failed = !matches!(outcome, WaitOutcome::Exited(0));
    // A job's time limit and a stall are what ended it, whatever it was doing then.
    match ev.killed_by {
        Some(KilledBy::Timeout) => return ExitClass::TimedOut,
        Some(KilledBy::Stall) => return ExitClass::Stalled,
        _ => {}
    }
    if ev.killed_by == Some(KilledBy::Watchdog) {
        return ExitClass::OomKilled {
            limit: ev.memory_limit,
            peak: ev.memory_peak,
            source: OomSource::Watchdog,
        };
    }
    // An OOM kill inside the cgroup explains a failure even when the victim was a child
    // (a dataloader worker, a gunicorn worker) and the main process exited afterwards.
    if ev.cgroup_oom_kills > 0 && failed {
        return ExitClass::OomKilled {
            limit: ev.memory_limit,
            peak: ev.memory_peak,
            source: OomSource::Kernel,
        };
    }
    if let (Some(KilledBy::FatalFinding), Some((category, line))) =
        (ev.killed_by, &ev.fatal_finding)
    {
        return ExitClass::FatalFinding {
            category: category.clone(),
            line: line.clone(),
        };
    }
    match ev.killed_by {
        Some(KilledBy::Unhealthy) => return ExitClass::KilledUnhealthy,
        Some(KilledBy::Stop) => return ExitClass::Stopped,
        _ => {}
    }
    match outcome {
        WaitOutcome::Exited(code) => ExitClass::Exited { code },
        WaitOutcome::Signaled(sig) => ExitClass::signaled(sig),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_counter_beats_the_bare_signal() {
        let ev = Evidence {
            cgroup_oom_kills: 1,
            memory_limit: Some(64 << 20),
            memory_peak: Some(64 << 20),
            ..Default::default()
        };
        assert!(matches!(
            classify(WaitOutcome::Signaled(9), &ev),
            ExitClass::OomKilled {
                source: OomSource::Kernel,
                limit: Some(_),
                ..
            }
        ));
        // A clean exit is not an OOM even if a child was OOM-killed along the way.
        assert_eq!(
            classify(WaitOutcome::Exited(0), &ev),
            ExitClass::Exited { code: 0 }
        );
    }

    #[test]
    fn sigkill_without_oom_evidence_is_just_a_signal() {
        assert_eq!(
            classify(WaitOutcome::Signaled(9), &Evidence::default()),
            ExitClass::signaled(9)
        );
        let stop = Evidence {
            killed_by: Some(KilledBy::Stop),
            ..Default::default()
        };
        assert_eq!(
            classify(WaitOutcome::Signaled(15), &stop),
            ExitClass::Stopped
        );
        assert_eq!(
            classify(WaitOutcome::Exited(3), &Evidence::default()),
            ExitClass::Exited { code: 3 }
        );
    }

    #[test]
    fn a_jobs_timeout_names_the_end_even_with_an_oom_on_the_way() {
        let ev = Evidence {
            killed_by: Some(KilledBy::Timeout),
            cgroup_oom_kills: 1,
            ..Default::default()
        };
        assert_eq!(classify(WaitOutcome::Signaled(9), &ev), ExitClass::TimedOut);
    }
}
