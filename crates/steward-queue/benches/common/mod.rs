//! What the queue benchmarks share: filling a queue, and workers that drain it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};
use steward_queue::{JobStore, NewJob};

pub const TTL: Duration = Duration::from_secs(60);

/// Enqueues jobs `from..to` of queue `bench` in batches of 1,000.
pub async fn fill(q: &dyn JobStore, from: usize, to: usize) {
    for start in (from..to).step_by(1000) {
        q.enqueue(
            (start..to.min(start + 1000))
                .map(|i| NewJob {
                    queue: "bench".into(),
                    key: i.to_string(),
                    payload: serde_json::json!({ "input": format!("/in/{i}") }),
                    priority: 0,
                    max_attempts: 3,
                    timeout_ms: None,
                })
                .collect(),
        )
        .await
        .unwrap();
    }
}

/// End to end: enqueues `jobs`, then `workers` tasks lease and complete until the queue
/// is empty; jobs/s over the whole.
pub async fn drain_rate(q: Arc<dyn JobStore>, jobs: usize, workers: usize) -> f64 {
    let start = Instant::now();
    fill(q.as_ref(), 0, jobs).await;
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let q = q.clone();
            tokio::spawn(async move {
                let owner = format!("w{w}");
                let mut next = q.lease("bench", &owner, TTL).await.unwrap();
                while let Some(j) = next {
                    let held = j.lease().unwrap();
                    next = q.complete_and_lease(&held, "bench", TTL).await.unwrap().1;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    jobs as f64 / start.elapsed().as_secs_f64()
}

/// `n` claims one after another, each timed alone (then completed, untimed): p50 and
/// p99 in milliseconds.
pub async fn claim_latency(q: &dyn JobStore, n: usize) -> (f64, f64) {
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let job = q
            .lease("bench", "w", TTL)
            .await
            .unwrap()
            .expect("a pending job");
        took.push(t.elapsed().as_secs_f64() * 1000.0);
        q.complete(&job.lease().unwrap()).await.unwrap();
    }
    took.sort_by(f64::total_cmp);
    (took[n / 2], took[n * 99 / 100])
}

/// Marks jobs `1..=n` succeeded (the queue's history), in batches.
pub async fn finish_first(q: &dyn JobStore, n: i64) {
    let mut id = 1;
    while id <= n {
        let to = (id + 9_999).min(n);
        q.mark_succeeded((id..=to).collect()).await.unwrap();
        id = to + 1;
    }
}
