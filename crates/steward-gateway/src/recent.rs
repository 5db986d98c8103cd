//! The latest first-byte times of a route, for a view's "recent p50/p99" (the metrics'
//! histogram is for Prometheus, which computes its own quantiles over time).

use std::collections::VecDeque;
use std::sync::Mutex;

/// How many of the latest requests a route keeps.
const KEPT: usize = 512;

#[derive(Debug, Default)]
pub(crate) struct Recent(Mutex<VecDeque<f64>>);

impl Recent {
    pub fn observe(&self, seconds: f64) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(seconds);
    }

    /// `(p50, p99)` in milliseconds of what is kept; `None` before any request.
    pub fn percentiles_ms(&self) -> Option<(f64, f64)> {
        let mut sorted: Vec<f64> = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize] * 1000.0;
        Some((at(0.5), at(0.99)))
    }
}

#[cfg(test)]
mod tests {
    use super::Recent;

    #[test]
    fn percentiles_come_from_the_latest_requests_only() {
        let r = Recent::default();
        assert_eq!(r.percentiles_ms(), None);
        for _ in 0..1000 {
            r.observe(10.0);
        }
        for i in 0..512 {
            r.observe(f64::from(i) / 1000.0);
        }
        let (p50, p99) = r.percentiles_ms().unwrap();
        assert!((255.0..=257.0).contains(&p50), "{p50}");
        assert!((505.0..=507.0).contains(&p99), "{p99}");
    }
}
