//! The queue's series: jobs by state (read from the store at scrape time, so they agree
//! with `steward queue stats` and survive restarts), and this agent's counts of attempts,
//! finished jobs and their durations.

use crate::family::{family, Labels};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use steward_events::{Counts, Durations};
use steward_queue::JobState;

/// A histogram read from a [`Durations`].
struct DurationHistogram<'a>(&'a Durations);

impl EncodeMetric for DurationHistogram<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.0.sum,
            self.0.count,
            &self.0.buckets(),
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn queue(q: &str) -> Labels {
    vec![("queue", q.to_string())]
}

pub fn encode(
    e: &mut DescriptorEncoder,
    queues: &[(String, steward_queue::Counts)],
    counts: &Counts,
) -> Result<(), std::fmt::Error> {
    family(
        e,
        "steward_jobs",
        "Jobs in each queue by state, as the queue has them now.",
        MetricType::Gauge,
        queues.iter().flat_map(|(q, c)| {
            JobState::ALL.iter().map(move |&st| {
                let mut l = queue(q);
                l.push(("state", st.to_string()));
                (l, ConstGauge::new(c.of(st) as i64))
            })
        }),
    )?;
    family(
        e,
        "steward_jobs_finished",
        "Jobs this agent saw reach an end, by outcome (succeeded, quarantined).",
        MetricType::Counter,
        counts.jobs_finished.iter().map(|((q, outcome), n)| {
            let mut l = queue(q);
            l.push(("outcome", outcome.clone()));
            (l, ConstCounter::new(*n))
        }),
    )?;
    family(
        e,
        "steward_job_attempts",
        "Attempts this agent saw end, by class (succeeded, or how the attempt failed).",
        MetricType::Counter,
        counts.job_attempts.iter().map(|((q, class), n)| {
            let mut l = queue(q);
            l.push(("class", class.clone()));
            (l, ConstCounter::new(*n))
        }),
    )?;
    family(
        e,
        "steward_job_duration_seconds",
        "How long finished jobs took from their first start to their end.",
        MetricType::Histogram,
        counts
            .job_durations
            .iter()
            .map(|(q, d)| (queue(q), DurationHistogram(d))),
    )?;
    Ok(())
}
