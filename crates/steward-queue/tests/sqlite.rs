//! What only the SQLite store does: refuse a damaged file naming the backup, restore it,
//! recover from a torn WAL, and never create a queue for a read.

use std::time::Duration;
use steward_queue::*;

fn job(key: &str) -> NewJob {
    NewJob {
        queue: "pdf".into(),
        key: key.into(),
        payload: serde_json::json!({ "input": format!("/in/{key}.pdf") }),
        priority: 0,
        max_attempts: 2,
        timeout_ms: None,
    }
}

#[tokio::test]
async fn a_truncated_queue_is_refused_naming_the_backup_and_restore_brings_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("queue.db");
    {
        let q = SqliteStore::open(&db).unwrap();
        q.enqueue((0..500).map(|i| job(&i.to_string())).collect())
            .await
            .unwrap();
        q.backup(3).await.unwrap();
    }
    // Fold the WAL into the file, then cut the file in half, as a full disk or a bad
    // copy would.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    let len = std::fs::metadata(&db).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let err = SqliteStore::open(&db)
        .err()
        .expect("a damaged queue is refused")
        .to_string();
    assert!(err.contains("queue.db is damaged"), "{err}");
    assert!(err.contains("steward will not recreate it"), "{err}");
    assert!(
        err.contains("The newest good backup is") && err.contains("(500 jobs)"),
        "{err}"
    );
    let used = restore(&db, None).unwrap();
    assert!(used.starts_with(dir.path().join("backups")));
    let q = SqliteStore::open(&db).unwrap();
    assert_eq!(q.stats(None).await.unwrap().counts.pending, 500);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("replaced-")),
        "the damaged file is kept aside"
    );
}

#[tokio::test]
async fn a_torn_or_missing_wal_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("queue.db");
    let q = SqliteStore::open(&db).unwrap();
    for i in 0..50 {
        q.enqueue(vec![job(&i.to_string())]).await.unwrap();
    }
    // Copy the files while the store is open and has not checkpointed: a crash image.
    let wal = dir.path().join("queue.db-wal");
    let wal_len = std::fs::metadata(&wal).unwrap().len();
    assert!(wal_len > 0, "the commits are in the WAL");
    for (name, cut) in [("torn", Some(wal_len / 2 + 123)), ("missing", None)] {
        let crash = dir.path().join(name);
        std::fs::create_dir(&crash).unwrap();
        std::fs::copy(&db, crash.join("queue.db")).unwrap();
        if let Some(cut) = cut {
            std::fs::copy(&wal, crash.join("queue.db-wal")).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(crash.join("queue.db-wal"))
                .unwrap()
                .set_len(cut)
                .unwrap();
        }
        let recovered =
            SqliteStore::open(&crash.join("queue.db")).unwrap_or_else(|e| panic!("{name}: {e}"));
        let n = recovered.stats(None).await.unwrap().counts.pending;
        assert!(n <= 50, "{name}: {n}");
        // Whatever survived is whole: each job has its payload.
        for j in recovered.list(&JobFilter::default()).await.unwrap() {
            assert!(j.input().is_some());
        }
        recovered.enqueue(vec![job("after-crash")]).await.unwrap();
    }
}

#[tokio::test]
async fn reads_never_create_a_queue() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("typo/queue.db");
    let err = SqliteStore::open_existing(&db)
        .err()
        .expect("no queue there")
        .to_string();
    assert!(err.contains("there is no queue at"), "{err}");
    assert!(!db.exists());
}

#[tokio::test]
async fn a_row_with_an_unknown_state_or_a_broken_payload_is_an_error_naming_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("queue.db");
    let q = SqliteStore::open(&db).unwrap();
    q.enqueue(vec![job("a"), job("b")]).await.unwrap();
    let raw = rusqlite::Connection::open(&db).unwrap();
    raw.execute("UPDATE jobs SET state = 'exploded' WHERE key = 'a'", [])
        .unwrap();
    let err = q.stats(None).await.expect_err("refused").to_string();
    assert!(
        err.contains("job 1") && err.contains("\"exploded\""),
        "{err}"
    );
    raw.execute(
        "UPDATE jobs SET state = 'pending', payload = '{not json' WHERE key = 'a'",
        [],
    )
    .unwrap();
    let err = q.get(1).await.expect_err("refused").to_string();
    assert!(
        err.contains("job 1") && err.contains("payload is not JSON"),
        "{err}"
    );
    assert!(q.list(&JobFilter::default()).await.is_err());
    // The other job still leases: one bad row does not stop the queue's work; it is
    // quarantined with the reason.
    let j = q
        .lease("pdf", "w", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(j.key, "b");
    let (state, why): (String, String) = raw
        .query_row(
            "SELECT state, last_error FROM jobs WHERE key = 'a'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(state, "quarantined");
    assert!(why.contains("cannot be read"), "{why}");
}
