use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{} is damaged ({detail}); steward will not recreate it, so no job is lost. {hint}", path.display())]
    Damaged {
        path: PathBuf,
        detail: String,
        hint: String,
    },
    #[error("queue database {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("the queue's writer thread has stopped")]
    WriterGone,
}
