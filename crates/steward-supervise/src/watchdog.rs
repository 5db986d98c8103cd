//! The soft memory limit: where no cgroup can enforce `memory`, steward polls the RSS of
//! the run's processes (found by their marker) and kills the run once it is over.

use crate::procfs;
use std::time::Duration;

/// How often the RSS is read.
const PERIOD: Duration = Duration::from_millis(500);

pub(crate) struct SoftLimit {
    limit: u64,
    unit: String,
    peak: Option<u64>,
    tick: tokio::time::Interval,
}

impl SoftLimit {
    pub fn new(limit: u64, unit: String) -> Self {
        SoftLimit {
            limit,
            unit,
            peak: None,
            tick: tokio::time::interval(PERIOD),
        }
    }

    /// The most RSS seen so far.
    pub fn peak(&self) -> Option<u64> {
        self.peak
    }

    /// Resolves at the first poll that finds the processes over the limit. Cancel-safe.
    pub async fn exceeded(&mut self) {
        loop {
            self.tick.tick().await;
            let rss: u64 = procfs::pids_with_marker(&self.unit)
                .into_iter()
                .filter_map(procfs::rss_bytes)
                .sum();
            self.peak = Some(self.peak.unwrap_or(0).max(rss));
            if rss > self.limit {
                return;
            }
        }
    }
}
