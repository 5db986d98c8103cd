//! The conformance suite: what every `JobStore` must do, written once against the trait and
//! run on each store (SQLite here; every other store runs the very same cases).

use std::sync::Arc;
use std::time::{Duration, Instant};
use steward_config::{Backoff, HumanDuration};
use steward_events::ExitClass;
use steward_queue::*;

const TTL: Duration = Duration::from_secs(60);

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

async fn lease(q: &dyn JobStore, owner: &str) -> Option<Job> {
    q.lease("pdf", owner, TTL).await.unwrap()
}

/// Polls `f` until it is true; panics after a deadline (the store's clock is the wall's).
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

mod cases {
    use super::*;

    pub async fn enqueue_is_idempotent_and_remembers_what_is_done(q: Arc<dyn JobStore>) {
        let q = q.as_ref();
        let first = q.enqueue(vec![job("a"), job("b")]).await.unwrap();
        assert!(matches!(first[0], EnqueueOutcome::Inserted { .. }));
        let again = q.enqueue(vec![job("a")]).await.unwrap();
        assert!(matches!(again[0], EnqueueOutcome::AlreadyQueued { .. }));
        let leased = lease(q, "w1").await.unwrap();
        assert_eq!((leased.key.as_str(), leased.attempts), ("a", 1));
        let held = leased.lease().unwrap();
        assert!(q.complete(&held).await.unwrap());
        assert!(
            !q.complete(&held).await.unwrap(),
            "completing twice changes nothing"
        );
        let again = q.enqueue(vec![job("a")]).await.unwrap();
        assert!(
            matches!(again[0], EnqueueOutcome::AlreadyDone { .. }),
            "the done-set"
        );
        let stats = q.stats(Some("pdf")).await.unwrap();
        assert_eq!((stats.counts.succeeded, stats.counts.pending), (1, 1));
        assert_eq!(stats.counts.total(), 2);
    }

    pub async fn a_job_that_keeps_crashing_is_quarantined_with_every_attempt(q: Arc<dyn JobStore>) {
        let q = q.as_ref();
        q.enqueue(vec![job("poison")]).await.unwrap();
        let j = lease(q, "w1").await.unwrap();
        assert!(matches!(
            q.fail(&j.lease().unwrap(), crash(), &no_backoff())
                .await
                .unwrap(),
            FailOutcome::Retrying { attempts: 1, .. }
        ));
        let j2 = lease(q, "w2").await.unwrap();
        assert_eq!(j2.attempts, 2);
        assert_eq!(
            q.fail(&j2.lease().unwrap(), crash(), &no_backoff())
                .await
                .unwrap(),
            FailOutcome::Quarantined { attempts: 2 }
        );
        assert!(
            lease(q, "w3").await.is_none(),
            "a quarantined job is never leased again"
        );
        let (job, attempts) = q.get(j.id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Quarantined);
        assert_eq!(job.last_error.as_deref(), Some("killed by SIGSEGV"));
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[1].owner.as_deref(), Some("w2"));
        assert_eq!(attempts[1].class, Some(ExitClass::signaled(11)));
        assert_eq!(
            attempts[1].stderr_tail.as_deref(),
            Some("Segmentation fault")
        );
    }

    pub async fn a_late_answer_from_a_lost_lease_changes_nothing(q: Arc<dyn JobStore>) {
        let q = q.as_ref();
        q.enqueue(vec![job("a")]).await.unwrap();
        let first = lease(q, "w1").await.unwrap().lease().unwrap();
        q.fail(&first, crash(), &no_backoff()).await.unwrap();
        // The same owner leases it again: a new attempt, so the first lease is void.
        let second = lease(q, "w1").await.unwrap().lease().unwrap();
        assert_eq!(second.attempt, 2);
        assert!(!q.complete(&first).await.unwrap(), "fenced by attempt");
        assert!(!q.heartbeat(&first, TTL).await.unwrap());
        assert!(!q.progress(&first, 0.5, None).await.unwrap());
        assert_eq!(
            q.fail(&first, crash(), &no_backoff()).await.unwrap(),
            FailOutcome::NotLeased
        );
        assert!(!q.quarantine_now(&first, crash()).await.unwrap());
        let other = Lease {
            owner: "w9".into(),
            ..second.clone()
        };
        assert!(!q.complete(&other).await.unwrap(), "fenced by owner");
        assert!(q.complete(&second).await.unwrap());
    }

    pub async fn heartbeats_extend_leases_and_progress_is_recorded(q: Arc<dyn JobStore>) {
        let q = q.as_ref();
        q.enqueue(vec![job("a")]).await.unwrap();
        let j = q
            .lease("pdf", "w1", Duration::from_millis(1))
            .await
            .unwrap()
            .unwrap();
        let held = j.lease().unwrap();
        assert!(q.heartbeat(&held, TTL).await.unwrap());
        assert!(q
            .progress(&held, 0.25, Some("page 3 of 12".into()))
            .await
            .unwrap());
        // Out-of-range progress is clamped, never stored as is.
        assert!(q.progress(&held, f64::NAN, None).await.unwrap());
        assert!(q.progress(&held, 7.0, Some("almost".into())).await.unwrap());
        let (now, _) = q.get(j.id).await.unwrap().unwrap();
        assert_eq!(now.progress, Some(1.0));
        assert_eq!(now.progress_message.as_deref(), Some("almost"));
        assert!(
            now.lease_expires_at.unwrap() > now_ms() + 30_000,
            "extended"
        );
        assert!(
            q.rescue(None, &no_backoff()).await.unwrap().is_empty(),
            "not expired"
        );
    }

    pub async fn expired_leases_and_leases_of_a_dead_agent_are_rescued(q: Arc<dyn JobStore>) {
        let q = q.as_ref();
        q.enqueue(vec![job("a"), job("b")]).await.unwrap();
        let a = q
            .lease("pdf", "agent-1/w#0", Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        let b = q.lease("pdf", "agent-2/w#0", TTL).await.unwrap().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let rescued = loop {
            let r = q.rescue(None, &no_backoff()).await.unwrap();
            if !r.is_empty() {
                break r;
            }
            assert!(
                Instant::now() < deadline,
                "the zero-length lease never expired"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(rescued.len(), 1, "only the expired lease");
        assert_eq!(rescued[0].0, a.id);
        assert!(
            q.rescue(Some("agent-2/"), &no_backoff())
                .await
                .unwrap()
                .is_empty(),
            "agent-2's own lease is kept"
        );
        let rescued = q.rescue(Some("agent-3/"), &no_backoff()).await.unwrap();
        assert_eq!(
            rescued[0].0, b.id,
            "a new agent takes back every lease of the one before"
        );
        let (_, attempts) = q.get(a.id).await.unwrap().unwrap();
        assert_eq!(attempts[0].class, Some(ExitClass::LeaseExpired));
        // A prefix with LIKE's wildcards in it matches only itself.
        q.enqueue(vec![job("c")]).await.unwrap();
        let c = lease(q, "run_1/w").await.unwrap();
        assert!(q
            .rescue(Some("run_1/"), &no_backoff())
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            q.rescue(Some("run%"), &no_backoff()).await.unwrap()[0].0,
            c.id
        );
    }

    pub async fn a_failed_job_waits_out_its_backoff(q: Arc<dyn JobStore>) {
        let q = q.as_ref();
        q.enqueue(vec![job("a")]).await.unwrap();
        let j = lease(q, "w1").await.unwrap();
        let slow = Backoff {
            initial: HumanDuration::secs(3600),
            max: HumanDuration::secs(3600),
            jitter: 0.0,
            reset_after: HumanDuration::secs(1),
        };
        let FailOutcome::Retrying { run_after, .. } =
            q.fail(&j.lease().unwrap(), crash(), &slow).await.unwrap()
        else {
            panic!("retried")
        };
        assert!(run_after >= now_ms() + 3_500_000);
        assert!(lease(q, "w1").await.is_none(), "not before its backoff");
        assert_eq!(q.stats(None).await.unwrap().counts.retrying, 1);
    }

    pub async fn higher_priority_first_then_oldest(q: Arc<dyn JobStore>) {
        let q = q.as_ref();
        let mut urgent = job("urgent");
        urgent.priority = 5;
        q.enqueue(vec![job("old"), job("new"), urgent])
            .await
            .unwrap();
        let order: Vec<String> = [
            lease(q, "w").await,
            lease(q, "w").await,
            lease(q, "w").await,
        ]
        .into_iter()
        .map(|j| j.unwrap().key)
        .collect();
        assert_eq!(order, ["urgent", "old", "new"]);
    }

    pub async fn quarantine_now_skips_the_retries(q: Arc<dyn JobStore>) {
        let q = q.as_ref();
        q.enqueue(vec![job("evil")]).await.unwrap();
        let j = lease(q, "w").await.unwrap();
        assert!(q
            .quarantine_now(&j.lease().unwrap(), crash())
            .await
            .unwrap());
        let (job, attempts) = q.get(j.id).await.unwrap().unwrap();
        assert_eq!((job.state, attempts.len()), (JobState::Quarantined, 1));
    }

    pub async fn cancel_and_retry_by_id_and_by_filter(q: Arc<dyn JobStore>) {
        let q = q.as_ref();
        q.enqueue((0..6).map(|i| job(&format!("k{i}"))).collect())
            .await
            .unwrap();
        let running = lease(q, "w").await.unwrap();
        let ids: Vec<i64> = q
            .list(&JobFilter::queue("pdf"))
            .await
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(
            q.cancel(Selection::Ids(vec![ids[1], ids[2]]))
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            q.cancel(Selection::Ids(vec![ids[1]])).await.unwrap(),
            0,
            "a cancelled job is finished"
        );
        let cancelled = JobFilter::queue("pdf").state(JobState::Cancelled);
        assert_eq!(q.list(&cancelled).await.unwrap().len(), 2);
        assert_eq!(
            q.retry(Selection::Matching(cancelled.clone()))
                .await
                .unwrap(),
            2
        );
        assert!(q.list(&cancelled).await.unwrap().is_empty());
        // A running job is not pulled from under its worker.
        assert_eq!(q.retry(Selection::Ids(vec![running.id])).await.unwrap(), 0);
        // Cancel everything unfinished whose input names k4 or k5.
        let text = JobFilter {
            text: Some("k5".into()),
            ..JobFilter::queue("pdf")
        };
        assert_eq!(q.cancel(Selection::Matching(text)).await.unwrap(), 1);
        // Retried jobs start again at attempt 1.
        q.cancel(Selection::Ids(vec![running.id])).await.unwrap();
        q.retry(Selection::Ids(vec![running.id])).await.unwrap();
        let (again, _) = q.get(running.id).await.unwrap().unwrap();
        assert_eq!((again.state, again.attempts), (JobState::Pending, 0));
        assert!(again.lease().is_none());
        assert!(
            !q.complete(&running.lease().unwrap()).await.unwrap(),
            "the old lease is void"
        );
    }

    pub async fn stats_and_lists_filter_by_queue_state_and_text(q: Arc<dyn JobStore>) {
        let q = q.as_ref();
        let other = NewJob {
            queue: "ocr".into(),
            ..job("scan-1")
        };
        q.enqueue(vec![job("report-a"), job("report-b"), other])
            .await
            .unwrap();
        lease(q, "w").await.unwrap();
        let all = q.stats(None).await.unwrap();
        assert_eq!(
            (all.counts.total(), all.counts.running, all.counts.pending),
            (3, 1, 2)
        );
        assert!(all.oldest_running.is_some());
        let ocr = q.stats(Some("ocr")).await.unwrap();
        assert_eq!((ocr.counts.total(), ocr.queue.as_deref()), (1, Some("ocr")));
        let by_text = JobFilter {
            text: Some("report-b".into()),
            ..Default::default()
        };
        let found = q.list(&by_text).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].input(), Some("/in/report-b.pdf"));
        let limited = JobFilter {
            limit: Some(2),
            ..Default::default()
        };
        assert_eq!(q.list(&limited).await.unwrap().len(), 2);
        assert!(q.get(123_456).await.unwrap().is_none());
        // Text is matched as written: LIKE's wildcards mean nothing.
        let wild = JobFilter {
            text: Some("%".into()),
            ..Default::default()
        };
        assert!(q.list(&wild).await.unwrap().is_empty());
    }

    pub async fn purge_deletes_only_old_finished_jobs(q: Arc<dyn JobStore>) {
        let q = q.as_ref();
        q.enqueue(vec![job("a"), job("b")]).await.unwrap();
        let a = lease(q, "w").await.unwrap();
        q.complete(&a.lease().unwrap()).await.unwrap();
        assert_eq!(
            q.purge(JobState::Succeeded, Duration::from_secs(3600))
                .await
                .unwrap(),
            0,
            "too recent"
        );
        eventually("the job to be older than 1 ms", || async {
            q.purge(JobState::Succeeded, Duration::from_millis(1))
                .await
                .unwrap()
                == 1
        })
        .await;
        assert!(
            q.purge(JobState::Pending, Duration::ZERO).await.is_err(),
            "unfinished jobs are not purged"
        );
        assert_eq!(q.stats(None).await.unwrap().counts.total(), 1);
    }

    pub async fn mark_succeeded_and_rebuild_done_reconcile_with_outputs(q: Arc<dyn JobStore>) {
        let q = q.as_ref();
        let out = tempfile::tempdir().unwrap();
        q.enqueue(vec![
            job("has-output"),
            job("no-output"),
            job("done-but-lost"),
        ])
        .await
        .unwrap();
        std::fs::write(out.path().join("has-output.txt"), "text").unwrap();
        let lost = q.list(&JobFilter::default()).await.unwrap()[2].id;
        assert_eq!(q.mark_succeeded(vec![lost]).await.unwrap(), 1);
        let rebuilt = rebuild_done(q, "pdf", out.path(), "{stem}.txt", true)
            .await
            .unwrap();
        assert_eq!(rebuilt.marked, 1);
        assert_eq!(rebuilt.missing.len(), 1);
        assert_eq!(rebuilt.missing[0].0, lost);
        assert_eq!(rebuilt.requeued, 1);
        let c = q.stats(None).await.unwrap().counts;
        assert_eq!((c.succeeded, c.pending), (1, 2));
    }

    pub async fn complete_and_lease_hands_over_the_next_job(q: Arc<dyn JobStore>) {
        let q = q.as_ref();
        q.enqueue(vec![job("a"), job("b")]).await.unwrap();
        let a = lease(q, "w").await.unwrap();
        let (done, next) = q
            .complete_and_lease(&a.lease().unwrap(), "pdf", TTL)
            .await
            .unwrap();
        assert!(done);
        assert_eq!(next.unwrap().key, "b");
        let (done, next) = q
            .complete_and_lease(&a.lease().unwrap(), "pdf", TTL)
            .await
            .unwrap();
        assert!(!done && next.is_none());
    }

    pub async fn concurrent_workers_lose_and_duplicate_nothing(q: Arc<dyn JobStore>) {
        let n = 2000;
        for chunk in (0..n).collect::<Vec<usize>>().chunks(500) {
            q.enqueue(chunk.iter().map(|i| job(&i.to_string())).collect())
                .await
                .unwrap();
        }
        let workers: Vec<_> = (0..16)
            .map(|w| {
                let q = q.clone();
                tokio::spawn(async move {
                    let owner = format!("w{w}");
                    let mut done = Vec::new();
                    while let Some(j) = q.lease("pdf", &owner, TTL).await.unwrap() {
                        assert!(q.complete(&j.lease().unwrap()).await.unwrap());
                        done.push(j.id);
                    }
                    done
                })
            })
            .collect();
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.unwrap());
        }
        all.sort_unstable();
        let before = all.len();
        all.dedup();
        assert_eq!(before, all.len(), "a job was leased twice");
        assert_eq!(all.len(), n);
        assert_eq!(q.stats(None).await.unwrap().counts.succeeded, n as u64);
    }

    pub async fn queue_names_with_quotes_or_a_nul_lease_only_their_own_jobs(q: Arc<dyn JobStore>) {
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
            .await
            .unwrap();
        }
        for (i, name) in names.iter().enumerate() {
            let leased = q.lease(name, "w", TTL).await.unwrap().unwrap();
            assert_eq!(
                (leased.queue.as_str(), leased.key.as_str()),
                (*name, i.to_string().as_str())
            );
            assert!(
                q.lease(name, "w", TTL).await.unwrap().is_none(),
                "{name:?} has one job"
            );
        }
    }
}

/// Runs every case against one store: `$make` is an async fn giving the store and
/// whatever must live as long as it (a temp dir, a server).
macro_rules! conformance {
    ($store:ident, $make:path) => {
        conformance!(@cases $store, $make, [
            enqueue_is_idempotent_and_remembers_what_is_done,
            a_job_that_keeps_crashing_is_quarantined_with_every_attempt,
            a_late_answer_from_a_lost_lease_changes_nothing,
            heartbeats_extend_leases_and_progress_is_recorded,
            expired_leases_and_leases_of_a_dead_agent_are_rescued,
            a_failed_job_waits_out_its_backoff,
            higher_priority_first_then_oldest,
            quarantine_now_skips_the_retries,
            cancel_and_retry_by_id_and_by_filter,
            stats_and_lists_filter_by_queue_state_and_text,
            purge_deletes_only_old_finished_jobs,
            mark_succeeded_and_rebuild_done_reconcile_with_outputs,
            complete_and_lease_hands_over_the_next_job,
            concurrent_workers_lose_and_duplicate_nothing,
            queue_names_with_quotes_or_a_nul_lease_only_their_own_jobs,
        ]);
    };
    (@cases $store:ident, $make:path, [$($case:ident),* $(,)?]) => {
        mod $store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (_keep, store) = $make().await;
                    super::cases::$case(store).await;
                }
            )*
        }
    };
}

async fn sqlite_store() -> (tempfile::TempDir, Arc<dyn JobStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("queue.db")).unwrap();
    (dir, Arc::new(store))
}

conformance!(sqlite, crate::sqlite_store);
