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
    Sql(rusqlite::Error),
    /// PostgreSQL's answer, or why it could not be reached, on one line.
    #[error("queue database: {0}")]
    Database(String),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    /// A row the store cannot read: an unknown state, a payload that is not JSON.
    #[error("job {id} in the queue cannot be read: {what}")]
    Corrupt { id: i64, what: String },
    /// The operation is not one this store does (a backup of a PostgreSQL queue).
    #[error("{0}")]
    Unsupported(String),
    #[error("the queue's writer thread has stopped")]
    WriterGone,
    #[error("{0}")]
    NodeTaken(crate::nodes::NodeTaken),
}

/// A row that does not read as a job, carried through rusqlite's row mapping.
#[derive(Debug)]
pub(crate) struct CorruptRow {
    pub id: i64,
    pub what: String,
}

impl std::fmt::Display for CorruptRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "job {}: {}", self.id, self.what)
    }
}

impl std::error::Error for CorruptRow {}

impl From<rusqlite::Error> for QueueError {
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::FromSqlConversionFailure(_, _, inner) = &e {
            if let Some(bad) = inner.downcast_ref::<CorruptRow>() {
                return QueueError::Corrupt {
                    id: bad.id,
                    what: bad.what.clone(),
                };
            }
        }
        QueueError::Sql(e)
    }
}
