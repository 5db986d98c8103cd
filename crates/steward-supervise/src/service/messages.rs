//! What the supervisor (and the agent's commands through it) tells an instance's task.

use nix::sys::signal::Signal;
use tokio::sync::oneshot;

pub(crate) enum Control {
    /// Start if not running; `done` fires once a process has been spawned (or failed to).
    Start(oneshot::Sender<()>),
    /// Stop and stay stopped; `done` fires once every process of the instance is gone.
    Stop(oneshot::Sender<()>),
    /// Stop, then start at once without backoff; `done` fires once the new one is spawned.
    Restart(oneshot::Sender<()>),
    /// Forward a signal to the process group (SIGHUP for a reload).
    Signal(Signal),
    /// The kernel's log named one of its processes (an OOM kill): shown as its latest
    /// finding.
    KernelFinding(Box<steward_explain::LiveFinding>),
    /// What its dependencies still wait for (`None`: nothing), while it is not running.
    Waiting(Option<String>),
}
