//! The retry budget: retries may be at most a fraction of the requests seen over a
//! sliding window (plus a small floor), so a failing backend cannot turn every request into
//! several and take the others down with it (a retry storm).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub struct RetryBudget {
    ratio: f64,
    /// Retries always allowed per window, so a quiet gateway can still fail over.
    floor: u32,
    window: Duration,
    events: Mutex<(VecDeque<Instant>, VecDeque<Instant>)>,
}

impl RetryBudget {
    pub fn new(ratio: f64, floor: u32, window: Duration) -> Self {
        RetryBudget {
            ratio,
            floor,
            window,
            events: Mutex::new((VecDeque::new(), VecDeque::new())),
        }
    }

    fn trim(&self, q: &mut VecDeque<Instant>, now: Instant) {
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            q.pop_front();
        }
    }

    pub fn request(&self) {
        let now = Instant::now();
        let mut e = self.events.lock().unwrap_or_else(|p| p.into_inner());
        self.trim(&mut e.0, now);
        if e.0.len() < 1_000_000 {
            e.0.push_back(now);
        }
    }

    /// Whether one more retry fits; counts it when it does.
    pub fn allow_retry(&self) -> bool {
        let now = Instant::now();
        let mut e = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let (requests, retries) = &mut *e;
        self.trim(requests, now);
        self.trim(retries, now);
        let allowed = (requests.len() as f64 * self.ratio) as usize + self.floor as usize;
        if retries.len() < allowed {
            retries.push_back(now);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn retries_are_capped_at_the_ratio_plus_the_floor() {
        let b = super::RetryBudget::new(0.2, 2, std::time::Duration::from_secs(10));
        for _ in 0..100 {
            b.request();
        }
        let granted = (0..100).filter(|_| b.allow_retry()).count();
        assert_eq!(granted, 22);
    }
}
