//! Admission: does what the config asks for fit on this host? Pure functions over the
//! config and host facts; `up` refuses to start when the answer is no.

mod admission;
mod instances;

pub use admission::{admit, Refusal};
pub use instances::{instances, Instance, PlanError};
