//! Counts kept from what happens, for `/metrics`: exits by class and OOM kills per instance
//! (from the events themselves), and each queue's attempts, finished jobs and durations
//! (from the pipelines' reporter). Counters only ever go up while the agent runs.

use crate::{Event, EventKind, ExitClass};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The upper bounds (seconds) of `steward_job_duration_seconds`' buckets: 10 ms to about
/// 3 hours, each 4 times the last.
pub const DURATION_BOUNDS: [f64; 10] = [
    0.01, 0.04, 0.16, 0.64, 2.56, 10.24, 40.96, 163.84, 655.36, 2621.44,
];

/// A histogram of job durations: how many fell at or under each bound, and their sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Durations {
    /// Not cumulative: `per_bucket[i]` counts durations in (bound[i-1], bound[i]]; the
    /// last slot counts those above every bound.
    pub per_bucket: [u64; DURATION_BOUNDS.len() + 1],
    pub count: u64,
    pub sum: f64,
}

impl Durations {
    pub fn observe(&mut self, seconds: f64) {
        let slot = DURATION_BOUNDS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(DURATION_BOUNDS.len());
        self.per_bucket[slot] += 1;
        self.count += 1;
        self.sum += seconds;
    }

    /// `(upper bound, count in that bucket alone)`, the last bound infinite: what an
    /// OpenMetrics encoder sums into cumulative buckets.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        DURATION_BOUNDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.per_bucket.iter().copied())
            .collect()
    }
}

/// What the tally holds at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// `(instance, class)`: process exits, by [`ExitClass::label`].
    pub exits: BTreeMap<(String, String), u64>,
    /// Per instance: processes the OOM killer killed (any of its processes, from the
    /// kernel's log; or its main process's exit where that log cannot be read).
    pub oom_kills: BTreeMap<String, u64>,
    /// Per instance: the latest OOM victims the kernel's log named, so that the main
    /// process's exit is not counted a second time.
    pub oom_victims: BTreeMap<String, Vec<u32>>,
    /// `(queue, class)`: attempts that ended, `succeeded` or the failure's class label.
    pub job_attempts: BTreeMap<(String, String), u64>,
    /// `(queue, outcome)`: jobs that reached an end, `succeeded` or `quarantined`.
    pub jobs_finished: BTreeMap<(String, String), u64>,
    /// `(instance, category)`: occurrences of findings in running output.
    pub findings: BTreeMap<(String, String), u64>,
    /// `(GPU UUID, Xid code)`: Xid errors the driver logged.
    pub gpu_xid: BTreeMap<(String, u32), u64>,
    /// Per queue: how long finished jobs took, from their first start.
    pub job_durations: BTreeMap<String, Durations>,
}

#[derive(Debug, Default)]
pub struct Tally(Mutex<Counts>);

impl Tally {
    fn with(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn snapshot(&self) -> Counts {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Counts what an event says about a service's processes.
    pub fn record(&self, event: &Event) {
        if let EventKind::GpuXid { xid, gpu, .. } = &event.kind {
            self.with(|c| *c.gpu_xid.entry((gpu.clone(), *xid)).or_default() += 1);
            return;
        }
        if let (
            Some(instance),
            EventKind::Finding {
                category, count, ..
            },
        ) = (&event.service, &event.kind)
        {
            self.with(|c| {
                *c.findings
                    .entry((instance.clone(), category.clone()))
                    .or_default() += count;
            });
            return;
        }
        let (Some(instance), EventKind::Exited { class, pid, .. }) = (&event.service, &event.kind)
        else {
            return;
        };
        self.with(|c| {
            *c.exits
                .entry((instance.clone(), class.label().to_string()))
                .or_default() += 1;
            let seen = c.oom_victims.get(instance).is_some_and(|v| v.contains(pid));
            if matches!(class, ExitClass::OomKilled { .. }) && !seen {
                *c.oom_kills.entry(instance.clone()).or_default() += 1;
            }
        });
    }

    /// A job's attempt ended: `Ok` or the class it failed with; `finished`: the job is
    /// done for good (succeeded, or quarantined out of attempts), after `ran_s` seconds.
    pub fn job_attempt(
        &self,
        queue: &str,
        outcome: Result<(), &ExitClass>,
        finished: bool,
        ran_s: f64,
    ) {
        let class = match outcome {
            Ok(()) => "succeeded",
            Err(c) => c.label(),
        };
        self.with(|c| {
            *c.job_attempts
                .entry((queue.to_string(), class.to_string()))
                .or_default() += 1;
            if finished {
                let end = if outcome.is_ok() {
                    "succeeded"
                } else {
                    "quarantined"
                };
                *c.jobs_finished
                    .entry((queue.to_string(), end.to_string()))
                    .or_default() += 1;
                c.job_durations
                    .entry(queue.to_string())
                    .or_default()
                    .observe(ran_s);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_count_by_class_and_oom_kills_apart() {
        let tally = Tally::default();
        let exit = |class: ExitClass| {
            Event::new(
                Some("api#1"),
                EventKind::Exited {
                    pid: 1,
                    class,
                    ran_ms: 5,
                    peak_memory: None,
                    explain: None,
                },
            )
        };
        tally.record(&exit(ExitClass::signaled(11)));
        tally.record(&exit(ExitClass::signaled(11)));
        tally.record(&exit(ExitClass::OomKilled {
            limit: None,
            peak: None,
            source: crate::OomSource::Kernel,
        }));
        tally.record(&Event::new(Some("api#1"), EventKind::Stopped));
        let c = tally.snapshot();
        assert_eq!(c.exits[&("api#1".into(), "signaled".into())], 2);
        assert_eq!(c.exits[&("api#1".into(), "oom_killed".into())], 1);
        assert_eq!(c.oom_kills["api#1"], 1);
        assert_eq!(c.exits.len(), 2);
    }

    #[test]
    fn a_finished_job_lands_in_its_bucket_and_attempts_count_each_try() {
        let tally = Tally::default();
        tally.job_attempt("ocr", Err(&ExitClass::TimedOut), false, 0.0);
        tally.job_attempt("ocr", Ok(()), true, 3.0);
        tally.job_attempt("ocr", Err(&ExitClass::signaled(11)), true, 9000.0);
        let c = tally.snapshot();
        assert_eq!(c.job_attempts.len(), 3);
        assert_eq!(c.jobs_finished[&("ocr".into(), "succeeded".into())], 1);
        assert_eq!(c.jobs_finished[&("ocr".into(), "quarantined".into())], 1);
        let d = &c.job_durations["ocr"];
        assert_eq!((d.count, d.sum), (2, 9003.0));
        // 3 s falls under 10.24 s; 9000 s above every bound (only +Inf counts it).
        let buckets = d.buckets();
        assert_eq!(buckets[4], (2.56, 0));
        assert_eq!(buckets[5], (10.24, 1));
        assert_eq!(buckets[9], (2621.44, 0));
        assert_eq!(buckets[10], (f64::INFINITY, 1));
    }
}
