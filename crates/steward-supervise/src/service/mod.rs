//! One instance of a service, run by its own task. Messages ([`Control`]) come in on a
//! channel, the task alone changes its state ([`TaskState`], published for `ps` and for
//! dependents), and its loop drives one explicit [`task::Phase`] at a time.

mod explaining;
mod messages;
mod readiness;
mod report;
mod state;
mod task;

pub(crate) use messages::Control;
pub(crate) use state::TaskState;
pub(crate) use task::Task;
