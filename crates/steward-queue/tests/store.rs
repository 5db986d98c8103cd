//! The SQLite store against a real database file.

use std::sync::Arc;
use steward_config::{Backoff, HumanDuration};
use steward_events::ExitClass;
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

fn no_backoff() -> Backoff {
    Backoff {
        initial: HumanDuration::millis(0),
        max: HumanDuration::millis(0),
        jitter: 0.0,
        reset_after: HumanDuration::secs(1),
    }
}

fn crash() -> Failure {
    Failure {
        class: ExitClass::signaled(11),
        error: "killed by SIGSEGV".into(),
        stderr_tail: Some("Segmentation fault".into()),
    }
}

#[test]
fn enqueue_is_idempotent_and_remembers_what_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let q = SqliteStore::open(&dir.path().join("queue.db")).unwrap();
    let first = q.enqueue(vec![job("a"), job("b")]).unwrap();
    assert!(matches!(first[0], EnqueueOutcome::Inserted { .. }));
    let again = q.enqueue(vec![job("a")]).unwrap();
    assert!(matches!(again[0], EnqueueOutcome::AlreadyQueued { .. }));
    let leased = q.lease("pdf", "w1", 60_000).unwrap().unwrap();
    assert_eq!(leased.key, "a");
    assert_eq!(leased.attempts, 1);
    assert!(q.complete(leased.id, "w1").unwrap());
    assert!(
        !q.complete(leased.id, "w1").unwrap(),
        "completing twice changes nothing"
    );
    let again = q.enqueue(vec![job("a")]).unwrap();
    assert!(
        matches!(again[0], EnqueueOutcome::AlreadyDone { .. }),
        "the done-set"
    );
    assert_eq!(q.stats(Some("pdf")).unwrap().counts["succeeded"], 1);
}

#[test]
fn a_job_that_keeps_crashing_is_quarantined_with_every_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let q = SqliteStore::open(&dir.path().join("queue.db")).unwrap();
    q.enqueue(vec![job("poison")]).unwrap();
    let j = q.lease("pdf", "w1", 60_000).unwrap().unwrap();
    assert!(matches!(
        q.fail(j.id, "w1", crash(), &no_backoff()).unwrap(),
        FailOutcome::Retrying { attempts: 1, .. }
    ));
    let j = q.lease("pdf", "w2", 60_000).unwrap().unwrap();
    assert_eq!(j.attempts, 2);
    assert_eq!(
        q.fail(j.id, "w2", crash(), &no_backoff()).unwrap(),
        FailOutcome::Quarantined { attempts: 2 }
    );
    assert!(
        q.lease("pdf", "w3", 60_000).unwrap().is_none(),
        "a quarantined job is never leased again"
    );
    let (job, attempts) = q.get(j.id).unwrap().unwrap();
    assert_eq!(job.state, JobState::Quarantined);
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[1].owner.as_deref(), Some("w2"));
    assert_eq!(attempts[1].class, Some(ExitClass::signaled(11)));
    // A stale owner cannot fail or complete a job it no longer holds.
    assert_eq!(
        q.fail(j.id, "w1", crash(), &no_backoff()).unwrap(),
        FailOutcome::NotLeased
    );
}

#[test]
fn expired_leases_and_leases_of_a_dead_agent_are_rescued() {
    let dir = tempfile::tempdir().unwrap();
    let q = SqliteStore::open(&dir.path().join("queue.db")).unwrap();
    q.enqueue(vec![job("a"), job("b")]).unwrap();
    let a = q.lease("pdf", "agent-1/w#0", -1).unwrap().unwrap();
    let b = q.lease("pdf", "agent-2/w#0", 60_000).unwrap().unwrap();
    let rescued = q.rescue(None, &no_backoff()).unwrap();
    assert_eq!(rescued.len(), 1, "only the expired lease");
    assert_eq!(rescued[0].0, a.id);
    assert!(
        q.rescue(Some("agent-2/"), &no_backoff())
            .unwrap()
            .is_empty(),
        "agent-2's own lease is kept"
    );
    let rescued = q.rescue(Some("agent-3/"), &no_backoff()).unwrap();
    assert_eq!(
        rescued[0].0, b.id,
        "a new agent takes back every lease of the one before"
    );
    let (_, attempts) = q.get(a.id).unwrap().unwrap();
    assert_eq!(attempts[0].class, Some(ExitClass::LeaseExpired));
}

#[test]
fn concurrent_workers_share_commits_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(SqliteStore::open(&dir.path().join("queue.db")).unwrap());
    let n = 2000;
    q.enqueue((0..n).map(|i| job(&i.to_string())).collect())
        .unwrap();
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let q = q.clone();
            std::thread::spawn(move || {
                let owner = format!("w{w}");
                let mut done = Vec::new();
                while let Some(j) = q.lease("pdf", &owner, 60_000).unwrap() {
                    assert!(q.complete(j.id, &owner).unwrap());
                    done.push(j.id);
                }
                done
            })
        })
        .collect();
    let mut all: Vec<i64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "a job was leased twice");
    assert_eq!(all.len(), n);
    assert_eq!(q.stats(None).unwrap().counts["succeeded"], n as u64);
}

#[test]
fn a_truncated_queue_is_refused_naming_the_backup_and_restore_brings_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("queue.db");
    {
        let q = SqliteStore::open(&db).unwrap();
        q.enqueue((0..500).map(|i| job(&i.to_string())).collect())
            .unwrap();
        backup(&q, 3).unwrap();
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
    assert_eq!(q.stats(None).unwrap().counts["pending"], 500);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("replaced-")),
        "the damaged file is kept aside"
    );
}

#[test]
fn a_torn_or_missing_wal_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("queue.db");
    let q = SqliteStore::open(&db).unwrap();
    for i in 0..50 {
        q.enqueue(vec![job(&i.to_string())]).unwrap();
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
        let n = recovered.stats(None).unwrap().counts["pending"];
        assert!(n <= 50, "{name}: {n}");
        // Whatever survived is whole: each job has its payload.
        for j in recovered.list(&JobFilter::default()).unwrap() {
            assert!(j.input().is_some());
        }
        recovered.enqueue(vec![job("after-crash")]).unwrap();
    }
}

#[test]
fn queue_names_with_quotes_or_a_nul_lease_only_their_own_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let q = SqliteStore::open(&dir.path().join("queue.db")).unwrap();
    let names = [
        "it's",
        "a'); DROP TABLE jobs; --",
        "nul\0name",
        "nul",
        "pdf",
    ];
    for (i, name) in names.iter().enumerate() {
        q.enqueue(vec![NewJob {
            queue: name.to_string(),
            ..job(&i.to_string())
        }])
        .unwrap();
    }
    for (i, name) in names.iter().enumerate() {
        let leased = q.lease(name, "w", 60_000).unwrap().unwrap();
        assert_eq!(
            (leased.queue.as_str(), leased.key.as_str()),
            (*name, i.to_string().as_str())
        );
        assert!(
            q.lease(name, "w", 60_000).unwrap().is_none(),
            "{name:?} has one job"
        );
    }
}
