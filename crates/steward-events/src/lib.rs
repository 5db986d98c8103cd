//! What happened, in one vocabulary: how a process ended ([`ExitClass`]), the events the
//! agent records ([`Event`]), and the append-only `events.jsonl` they are kept in.

mod class;
mod event;
mod log;
mod tally;

pub use class::{fmt_bytes, Enforcement, ExitClass, OomSource};
pub use event::{now_rfc3339, Event, EventKind};
pub use log::{EventLog, EventLogError};
pub use tally::{Counts, Durations, Tally, DURATION_BOUNDS};
