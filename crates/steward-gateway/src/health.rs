//! Backend health: active probes (`GET /health`: 200 up, 503 loading, anything else
//! down) and passive ejection (consecutive failures put a backend in a cooldown that
//! doubles each time; a backend that cannot be reached, or that times out, is ejected at
//! once). A backend comes back when a probe passes.
//!
//! A backend that *hangs* (its last try or probe timed out) is not tried even as a last
//! resort, since every try costs a full timeout: only one trial request per cooldown goes
//! there, so that its recovery is seen at once.

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

/// How a try failed, as ejection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// No connection could be made: ejected at once.
    Unreachable,
    /// It timed out (connect, head, first event, idle): ejected at once, and it hangs.
    Timeout,
    /// It answered badly (5xx, not JSON, broken): ejected after a few in a row.
    Error,
}

/// Whether a request may go to a backend now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Up, not ejected, not held off.
    Yes,
    /// Down for errors, loading or held off: tried only when nothing else is left.
    LastResort,
    /// It hangs, and this request is the one trial of its cooldown.
    Trial,
    /// It hangs: not tried.
    No,
}

#[derive(Debug)]
struct State {
    failures: u32,
    /// The last try or probe timed out, and nothing has answered since.
    hanging: bool,
    /// While hanging: when the next trial request may go.
    next_trial: Option<Instant>,
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
            hanging: false,
            next_trial: None,
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
        s.hanging = false;
        s.next_trial = None;
    }

    /// Whether a request may go there now; claims the trial of a hanging backend.
    pub fn admits(&self) -> Admit {
        let now = Instant::now();
        let mut s = self.lock();
        let routable = s.probe == Probe::Up
            && s.ejected_until.is_none_or(|t| now >= t)
            && s.held_until.is_none_or(|t| now >= t);
        if routable {
            return Admit::Yes;
        }
        if !s.hanging {
            return Admit::LastResort;
        }
        if s.next_trial.is_none_or(|t| now >= t) {
            s.next_trial = Some(now + s.cooldown);
            return Admit::Trial;
        }
        Admit::No
    }

    /// When a hanging backend takes its next trial.
    pub fn next_trial_in(&self) -> Option<Duration> {
        let s = self.lock();
        s.next_trial
            .map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// A failed try. True when this ejected it.
    pub fn failure(&self, how: Failed) -> bool {
        let mut s = self.lock();
        s.failures += 1;
        if how == Failed::Timeout {
            s.hanging = true;
            s.next_trial = Some(Instant::now() + s.cooldown);
        }
        if how != Failed::Error || s.failures >= EJECT_AFTER {
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

    /// A probe's answer (`note`: why it is down, in words; `timed_out`: it did not answer
    /// at all). A passing probe ends an ejection early; any answer ends hanging.
    pub fn probed(&self, p: Probe, note: Option<String>, timed_out: bool) {
        let mut s = self.lock();
        s.probe = p;
        s.note = note;
        if timed_out {
            if !s.hanging {
                s.next_trial = Some(Instant::now() + s.cooldown);
            }
            s.hanging = true;
        } else if p != Probe::Down {
            s.hanging = false;
            s.next_trial = None;
        }
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
            (Probe::Up, true, _) if s.hanging => "ejected (timed out)",
            (Probe::Up, true, _) => "ejected",
            (Probe::Up, false, true) => "held off (429 Retry-After)",
            (Probe::Loading, _, _) => "loading",
            (Probe::Down, _, _) if s.hanging => "down (hangs)",
            (Probe::Down, _, _) => "down",
        };
        match &s.note {
            Some(n) if s.probe != Probe::Up => format!("{word} ({n})"),
            _ => word.to_string(),
        }
    }
}
