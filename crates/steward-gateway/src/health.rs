//! Backend health: active probes (`GET /health`: 200 up, 503 loading, anything else
//! down) and passive ejection (consecutive failures put a backend in a cooldown that
//! doubles each time; a refused connection ejects at once). A backend comes back when a
//! probe passes.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Failures in a row that eject a backend.
pub const EJECT_AFTER: u32 = 3;
const FIRST_COOLDOWN: Duration = Duration::from_secs(1);
const MAX_COOLDOWN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Up,
    /// 503: alive but loading its model; not routed to.
    Loading,
    Down,
}

#[derive(Debug)]
struct State {
    failures: u32,
    ejected_until: Option<Instant>,
    /// A 429's Retry-After: not ended by a passing probe (the server is up, but asked
    /// for a pause).
    held_until: Option<Instant>,
    cooldown: Duration,
    probe: Probe,
    /// Why it is down, when the supervisor says so.
    note: Option<String>,
}

#[derive(Debug)]
pub struct Health(Mutex<State>);

impl Default for Health {
    fn default() -> Self {
        Health(Mutex::new(State {
            failures: 0,
            ejected_until: None,
            held_until: None,
            cooldown: FIRST_COOLDOWN,
            probe: Probe::Up,
            note: None,
        }))
    }
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether requests may go to this backend now.
    pub fn routable(&self) -> bool {
        let s = self.lock();
        let now = Instant::now();
        s.probe == Probe::Up
            && s.ejected_until.is_none_or(|t| now >= t)
            && s.held_until.is_none_or(|t| now >= t)
    }

    pub fn success(&self) {
        let mut s = self.lock();
        s.failures = 0;
        s.cooldown = FIRST_COOLDOWN;
        s.ejected_until = None;
    }

    /// A failed try; `refused` (nothing listens) ejects at once. True when this ejected it.
    pub fn failure(&self, refused: bool) -> bool {
        let mut s = self.lock();
        s.failures += 1;
        if refused || s.failures >= EJECT_AFTER {
            let was_ejected = s.ejected_until.is_some_and(|t| Instant::now() < t);
            s.ejected_until = Some(Instant::now() + s.cooldown);
            s.cooldown = (s.cooldown * 2).min(MAX_COOLDOWN);
            s.failures = 0;
            return !was_ejected;
        }
        false
    }

    /// Keeps requests away for `wait` (a 429's Retry-After).
    pub fn hold_off(&self, wait: Duration) {
        let mut s = self.lock();
        let until = Instant::now() + wait;
        s.held_until = Some(s.held_until.map_or(until, |t| t.max(until)));
    }

    /// A probe's answer (`note`: why it is down, in words). A passing probe ends an
    /// ejection early.
    pub fn probed(&self, p: Probe, note: Option<String>) {
        let mut s = self.lock();
        s.probe = p;
        s.note = note;
        if p == Probe::Up {
            s.ejected_until = None;
            s.cooldown = FIRST_COOLDOWN;
        }
    }

    pub fn describe(&self) -> String {
        let s = self.lock();
        let now = Instant::now();
        let ejected = s.ejected_until.is_some_and(|t| now < t);
        let held = s.held_until.is_some_and(|t| now < t);
        let word = match (s.probe, ejected, held) {
            (Probe::Up, false, false) => "up",
            (Probe::Up, true, _) => "ejected",
            (Probe::Up, false, true) => "held off (429 Retry-After)",
            (Probe::Loading, _, _) => "loading",
            (Probe::Down, _, _) => "down",
        };
        match &s.note {
            Some(n) if s.probe != Probe::Up => format!("{word} ({n})"),
            _ => word.to_string(),
        }
    }
}
