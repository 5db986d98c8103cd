//! PostgreSQL's errors as one readable line: the server's message and code when it sent
//! one, the cause of a lost connection otherwise.

use crate::QueueError;

/// A driver error as a [`QueueError::Database`].
pub fn pg(e: tokio_postgres::Error) -> QueueError {
    QueueError::Database(describe(&e))
}

/// A pool error (no connection could be had) as a [`QueueError::Database`].
pub fn pool(e: deadpool_postgres::PoolError) -> QueueError {
    QueueError::Database(match e {
        deadpool_postgres::PoolError::Backend(e) => describe(&e),
        deadpool_postgres::PoolError::Timeout(_) => {
            "no connection to the database within the timeout".into()
        }
        other => other.to_string(),
    })
}

fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
