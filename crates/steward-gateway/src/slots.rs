//! Concurrency slots: a backend with `max_concurrency` takes at most that many requests
//! at once. A slot is held until the response body has been passed on, and freeing one
//! wakes the requests waiting in a route's queue.

use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// Requests in flight to one backend URL (shared by every route that names it).
#[derive(Default)]
pub struct InFlight {
    count: AtomicU32,
    gauge: Gauge,
}

impl InFlight {
    pub fn with_gauge(gauge: Gauge) -> Self {
        InFlight {
            count: AtomicU32::new(0),
            gauge,
        }
    }

    pub fn get(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }

    /// A slot when fewer than `max` are in flight (always, without a max).
    pub fn try_acquire(self: &Arc<Self>, max: Option<u32>, freed: &Arc<Notify>) -> Option<Slot> {
        let taken = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| match max {
                Some(m) if n >= m => None,
                _ => Some(n + 1),
            });
        taken.ok().map(|_| {
            self.gauge.inc();
            Slot {
                in_flight: self.clone(),
                freed: freed.clone(),
            }
        })
    }
}

/// One request's place on a backend; dropping it frees the place.
pub struct Slot {
    in_flight: Arc<InFlight>,
    freed: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight.count.fetch_sub(1, Ordering::AcqRel);
        self.in_flight.gauge.dec();
        self.freed.notify_waiters();
    }
}

/// Counts the requests waiting in a route's queue while it lives.
pub struct Waiting<'a>(&'a AtomicU32, &'a Gauge);

impl<'a> Waiting<'a> {
    /// A place in the queue, unless `max` already wait.
    pub fn enter(count: &'a AtomicU32, gauge: &'a Gauge, max: u32) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        gauge.inc();
        Some(Waiting(count, gauge))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        self.1.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_backend_gives_no_slot_until_one_is_dropped() {
        let f = Arc::new(InFlight::default());
        let freed = Arc::new(Notify::new());
        let a = f.try_acquire(Some(2), &freed).unwrap();
        let _b = f.try_acquire(Some(2), &freed).unwrap();
        assert!(f.try_acquire(Some(2), &freed).is_none());
        drop(a);
        assert!(f.try_acquire(Some(2), &freed).is_some());
        assert!(f.try_acquire(None, &freed).is_some(), "no max, no limit");
    }

    #[test]
    fn the_queue_is_bounded() {
        let (n, g) = (AtomicU32::new(0), Gauge::default());
        let w = Waiting::enter(&n, &g, 1).unwrap();
        assert!(Waiting::enter(&n, &g, 1).is_none());
        assert_eq!(g.get(), 1);
        drop(w);
        assert_eq!(g.get(), 0);
        assert!(Waiting::enter(&n, &g, 1).is_some());
    }
}
