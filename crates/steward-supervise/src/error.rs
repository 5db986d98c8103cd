//! What the supervisor's commands answer when they cannot do what was asked.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("no service named \"{name}\"; this config has: {known}")]
    UnknownService { name: String, known: String },
    #[error("cannot open the log folder {}: {source}", path.display())]
    Logs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the task for \"{0}\" has ended")]
    TaskGone(String),
    #[error("cannot start {service}: {why}")]
    Blocked { service: String, why: String },
    #[error("{instance} did not become ready: {why}; the rolling restart stopped there")]
    NotReady { instance: String, why: String },
}
