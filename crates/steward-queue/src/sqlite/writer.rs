//! The writer thread: it owns the write connection and commits whatever transitions are
//! waiting in one transaction (each in its own savepoint, so one failing transition does
//! not undo the others): group commit. Replies go out only after COMMIT returned, so an
//! acknowledged transition is on disk.

use rusqlite::Connection;
use std::sync::mpsc;

/// Told whether the commit that held the transition succeeded.
pub(super) type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
/// Runs on the writer's connection: whether it failed (to roll its savepoint back), and
/// how to reply once the commit is known.
pub(super) type Run = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;

/// One transition for the writer. A transition of a single statement is atomic by itself
/// and skips its savepoint (two statements less per job on the hot path).
pub(super) struct Op {
    pub run: Run,
    pub single_statement: bool,
}

/// Most transitions folded into one commit.
const GROUP_MAX: usize = 512;

pub(super) fn writer_loop(conn: Connection, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(batch.len());
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            for op in batch {
                let (_, reply) = (op.run)(&conn);
                reply(Err(e.to_string()));
            }
            continue;
        }
        for op in batch {
            if op.single_statement {
                let (_, reply) = (op.run)(&conn);
                replies.push(reply);
                continue;
            }
            // Cached statements: parsing SAVEPOINT/RELEASE for every job is measurable.
            let _ = run_cached(&conn, "SAVEPOINT op");
            let (failed, reply) = (op.run)(&conn);
            if failed {
                let _ = run_cached(&conn, "ROLLBACK TO op");
            }
            let _ = run_cached(&conn, "RELEASE op");
            replies.push(reply);
        }
        let committed = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for reply in replies {
            reply(committed.clone());
        }
    }
}

fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}
