//! Concurrency slots: a backend with `max_concurrency` takes at most that many requests
//! at once. A slot is held until the response body has been passed on, and freeing one
//! wakes the requests waiting in a route's queue (and costs nothing more while none do).
//!
//! No wake-up is lost: a request arms its wake-up ([`SlotFreed::notified`]) before it looks
//! at the backends, and after it has joined a queue ([`Waiting::enter`]) it looks again
//! ([`InFlight::has_room`]) before it sleeps. A slot freed in between either saw it
//! waiting (and woke it) or is seen by that second look.

use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// Freed slots, and how many requests wait for one.
#[derive(Default)]
pub struct SlotFreed {
    notify: Notify,
    waiting: AtomicU32,
}

impl SlotFreed {
    /// A wake-up for every slot freed from now on (no registration is needed for that).
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    fn freed(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }
}

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

    /// Whether a slot could be taken now.
    pub fn has_room(&self, max: Option<u32>) -> bool {
        max.is_none_or(|m| self.count.load(Ordering::SeqCst) < m)
    }

    /// A slot when fewer than `max` are in flight (always, without a max).
    pub fn try_acquire(self: &Arc<Self>, max: Option<u32>, freed: &Arc<SlotFreed>) -> Option<Slot> {
        let taken = self
            .count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match max {
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
    freed: Arc<SlotFreed>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight.count.fetch_sub(1, Ordering::SeqCst);
        self.in_flight.gauge.dec();
        self.freed.freed();
    }
}

/// Counts a request waiting in a route's queue while it lives.
pub struct Waiting<'a> {
    count: &'a AtomicU32,
    gauge: &'a Gauge,
    freed: &'a SlotFreed,
}

impl<'a> Waiting<'a> {
    /// A place in the queue, unless `max` already wait.
    pub fn enter(
        count: &'a AtomicU32,
        gauge: &'a Gauge,
        max: u32,
        freed: &'a SlotFreed,
    ) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        freed.waiting.fetch_add(1, Ordering::SeqCst);
        gauge.inc();
        Some(Waiting {
            count,
            gauge,
            freed,
        })
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.freed.waiting.fetch_sub(1, Ordering::SeqCst);
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_backend_gives_no_slot_until_one_is_dropped() {
        let f = Arc::new(InFlight::default());
        let freed = Arc::new(SlotFreed::default());
        let a = f.try_acquire(Some(2), &freed).unwrap();
        let _b = f.try_acquire(Some(2), &freed).unwrap();
        assert!(f.try_acquire(Some(2), &freed).is_none());
        drop(a);
        assert!(f.try_acquire(Some(2), &freed).is_some());
        assert!(f.try_acquire(None, &freed).is_some(), "no max, no limit");
    }

    #[test]
    fn the_queue_is_bounded() {
        let (n, g, freed) = (AtomicU32::new(0), Gauge::default(), SlotFreed::default());
        let w = Waiting::enter(&n, &g, 1, &freed).unwrap();
        assert!(Waiting::enter(&n, &g, 1, &freed).is_none());
        assert_eq!(g.get(), 1);
        assert_eq!(freed.waiting.load(Ordering::SeqCst), 1);
        drop(w);
        assert_eq!(g.get(), 0);
        assert_eq!(freed.waiting.load(Ordering::SeqCst), 0);
        assert!(Waiting::enter(&n, &g, 1, &freed).is_some());
    }
}
