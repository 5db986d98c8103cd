//! The retry budget: retries may be at most a fraction of the requests seen over a
//! sliding window (plus a small floor), so a failing backend cannot turn every request into
//! several and take the others down with it (a retry storm).
//!
//! The window is kept as a ring of time buckets with counts, so a request costs one
//! increment and the budget's memory does not grow with the request rate.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The window's resolution: it slides by a twentieth of itself.
const BUCKETS: usize = 20;

#[derive(Clone, Copy, Default)]
struct Bucket {
    /// Which slice of time (since `start`) the counts are for.
    epoch: u64,
    requests: u64,
    retries: u64,
}

pub struct RetryBudget {
    ratio: f64,
    /// Retries always allowed per window, so a quiet gateway can still fail over.
    floor: u32,
    start: Instant,
    bucket_len: Duration,
    buckets: Mutex<[Bucket; BUCKETS]>,
}

impl RetryBudget {
    pub fn new(ratio: f64, floor: u32, window: Duration) -> Self {
        RetryBudget {
            ratio,
            floor,
            start: Instant::now(),
            bucket_len: (window / BUCKETS as u32).max(Duration::from_millis(1)),
            buckets: Mutex::new([Bucket::default(); BUCKETS]),
        }
    }

    /// The current slice of time, and its bucket (emptied when it last held an older one).
    fn current<'a>(&self, buckets: &'a mut [Bucket; BUCKETS]) -> (u64, &'a mut Bucket) {
        // Epochs start at 1, so the zeroed buckets count as long gone.
        let epoch = 1 + (self.start.elapsed().as_nanos() / self.bucket_len.as_nanos()) as u64;
        let b = &mut buckets[(epoch % BUCKETS as u64) as usize];
        if b.epoch != epoch {
            *b = Bucket {
                epoch,
                ..Bucket::default()
            };
        }
        (epoch, b)
    }

    pub fn request(&self) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        self.current(&mut buckets).1.requests += 1;
    }

    /// Whether one more retry fits; counts it when it does.
    pub fn allow_retry(&self) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (epoch, _) = self.current(&mut buckets);
        let live = |b: &&Bucket| b.epoch + BUCKETS as u64 > epoch;
        let requests: u64 = buckets.iter().filter(live).map(|b| b.requests).sum();
        let retries: u64 = buckets.iter().filter(live).map(|b| b.retries).sum();
        let allowed = (requests as f64 * self.ratio) as u64 + u64::from(self.floor);
        if retries < allowed {
            self.current(&mut buckets).1.retries += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[tokio::test]
    async fn retries_are_capped_at_the_ratio_plus_the_floor() {
        let b = super::RetryBudget::new(0.2, 2, Duration::from_secs(10));
        for _ in 0..100 {
            b.request();
        }
        let granted = (0..100).filter(|_| b.allow_retry()).count();
        assert_eq!(granted, 22);
    }

    #[tokio::test(start_paused = true)]
    async fn what_left_the_window_no_longer_counts() {
        let b = super::RetryBudget::new(0.5, 0, Duration::from_secs(10));
        for _ in 0..100 {
            b.request();
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!b.allow_retry(), "the old requests have left the window");
        for _ in 0..4 {
            b.request();
        }
        let granted = (0..10).filter(|_| b.allow_retry()).count();
        assert_eq!(granted, 2);
    }
}
