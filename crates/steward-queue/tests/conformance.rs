//! The conformance suite: what every `JobStore` must do, written once against the trait and
//! run on each store (SQLite here; every other store runs the very same cases).

use std::sync::Arc;
use std::time::{Duration, Instant};
use steward_config::{Backoff, HumanDuration};
use steward_events::ExitClass;
use steward_queue::*;

const TTL: Duration = Duration::from_secs(60);
const NODE_TTL: Duration = Duration::from_secs(30);

fn node(name: &str, run: &str) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        run: run.into(),
        host: "here".into(),
        pid: std::process::id(),
        version: "test".into(),
        ..Default::default()
    }
}

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
        let me = node("n1", "r1");
        q.join(&me, NODE_TTL).await.unwrap();
        q.enqueue(vec![job("a")]).await.unwrap();
        let j = q
            .lease("pdf", &me.owner("w1"), Duration::from_millis(1))
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
            q.rescue(NODE_TTL, &no_backoff()).await.unwrap().is_empty(),
            "not expired, and its node is alive"
        );
    }

    pub async fn expired_leases_and_leases_of_a_dead_agent_are_rescued(q: Arc<dyn JobStore>) {
        let q = q.as_ref();
        let (mut n1, n2) = (node("n1", "r1"), node("n2", "r1"));
        // Its process is gone by the time it restarts (no pid is this large).
        n1.pid = 999_999_999;
        q.join(&n1, NODE_TTL).await.unwrap();
        q.join(&n2, NODE_TTL).await.unwrap();
        q.enqueue(vec![job("a"), job("b"), job("c"), job("d")])
            .await
            .unwrap();
        let a = q
            .lease("pdf", &n1.owner("w#0"), Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        let b = q
            .lease("pdf", &n2.owner("w#0"), TTL)
            .await
            .unwrap()
            .unwrap();
        let c = q
            .lease("pdf", &n1.owner("w#1"), TTL)
            .await
            .unwrap()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let rescued = loop {
            let r = q.rescue(NODE_TTL, &no_backoff()).await.unwrap();
            if !r.is_empty() {
                break r;
            }
            assert!(
                Instant::now() < deadline,
                "the zero-length lease never expired"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(rescued.len(), 1, "only the expired lease: {rescued:?}");
        assert_eq!(rescued[0].0, a.id);
        let (_, attempts) = q.get(a.id).await.unwrap().unwrap();
        assert_eq!(attempts[0].class, Some(ExitClass::LeaseExpired));
        // n1 restarts: a new run of the same node; what its earlier run held is taken back,
        // and n2's leases are left alone.
        let n1_again = node("n1", "r2");
        q.join(&n1_again, NODE_TTL).await.unwrap();
        let rescued = q.rescue(NODE_TTL, &no_backoff()).await.unwrap();
        assert_eq!(
            rescued.iter().map(|r| r.0).collect::<Vec<_>>(),
            [c.id],
            "the earlier run's lease, and only it"
        );
        // n2 stops beating: once past the TTL it is dead and its lease is rescued.
        let short = Duration::from_millis(50);
        eventually("n2 to be silent past a short TTL", || async {
            !q.rescue(short, &no_backoff()).await.unwrap().is_empty()
                || q.get(b.id).await.unwrap().unwrap().0.state != JobState::Running
        })
        .await;
        assert_ne!(
            q.get(b.id).await.unwrap().unwrap().0.state,
            JobState::Running
        );
        // A lease whose owner names no registered node is no one's.
        let d = lease(q, "stray").await.unwrap();
        assert_eq!(q.rescue(NODE_TTL, &no_backoff()).await.unwrap()[0].0, d.id);
        // A node that leaves gives its leases back at once.
        q.enqueue(vec![job("e")]).await.unwrap();
        let e = q
            .lease("pdf", &n1_again.owner("w#0"), TTL)
            .await
            .unwrap()
            .unwrap();
        assert!(q.rescue(NODE_TTL, &no_backoff()).await.unwrap().is_empty());
        q.leave(&n1_again).await.unwrap();
        assert_eq!(q.rescue(NODE_TTL, &no_backoff()).await.unwrap()[0].0, e.id);
    }

    pub async fn nodes_join_beat_lead_and_leave_and_a_live_name_is_not_taken(q: Arc<dyn JobStore>) {
        let q = q.as_ref();
        let mut a = node("gpu-1", "r1");
        a.host = "host-a".into();
        a.pid = 4242;
        q.join(&a, NODE_TTL).await.unwrap();
        // The same name from another host while the first is alive: refused, naming it.
        let mut b = node("gpu-1", "r9");
        b.host = "host-b".into();
        match q.join(&b, NODE_TTL).await {
            Err(QueueError::NodeTaken(t)) => {
                assert_eq!((t.pid, t.host.as_str()), (4242, "host-a"));
                assert!(t.to_string().contains("pid 4242 on host host-a"), "{t}");
            }
            other => panic!("a live name was taken: {other:?}"),
        }
        let c = node("gpu-2", "r1");
        q.join(&c, NODE_TTL).await.unwrap();
        assert!(
            q.lead(&a, NODE_TTL).await.unwrap(),
            "the first to ask leads"
        );
        assert!(!q.lead(&c, NODE_TTL).await.unwrap(), "exactly one leader");
        assert!(
            q.lead(&a, NODE_TTL).await.unwrap(),
            "the leader keeps its lease"
        );
        q.enqueue(vec![job("x")]).await.unwrap();
        q.lease("pdf", &a.owner("w#0"), TTL).await.unwrap().unwrap();
        a.services_up = 3;
        assert!(q.beat(&a).await.unwrap());
        let nodes = q.nodes(NODE_TTL).await.unwrap();
        let row = nodes.iter().find(|n| n.info.name == "gpu-1").unwrap();
        assert!(row.alive && row.leader && !row.stopped);
        assert_eq!((row.info.services_up, row.jobs_running), (3, 1));
        assert_eq!(nodes.len(), 2);
        // Leaving gives up the lead; another node takes it.
        q.leave(&a).await.unwrap();
        assert!(!q.beat(&a).await.unwrap(), "a stopped run does not beat");
        assert!(q.lead(&c, NODE_TTL).await.unwrap());
        let row = q
            .nodes(NODE_TTL)
            .await
            .unwrap()
            .into_iter()
            .find(|n| n.info.name == "gpu-1")
            .unwrap();
        assert!(row.stopped && !row.alive && !row.leader);
        // Now the name is free for the other host; the old run cannot beat for it.
        q.join(&b, NODE_TTL).await.unwrap();
        assert!(!q.beat(&a).await.unwrap());
        assert!(q.beat(&b).await.unwrap());
        // A leader silent past its lease is replaced.
        let short = Duration::from_millis(20);
        let d = node("gpu-3", "r1");
        q.join(&d, NODE_TTL).await.unwrap();
        assert!(q.lead(&c, short).await.unwrap());
        eventually("the leader's lease to run out", || async {
            q.lead(&d, NODE_TTL).await.unwrap()
        })
        .await;
        assert!(!q.lead(&c, NODE_TTL).await.unwrap());
    }

    pub async fn lease_many_claims_up_to_the_free_slots_in_order(q: Arc<dyn JobStore>) {
        let q = q.as_ref();
        q.enqueue((0..5).map(|i| job(&i.to_string())).collect())
            .await
            .unwrap();
        let owners: Vec<String> = (0..3).map(|i| format!("w{i}")).collect();
        let got = q.lease_many("pdf", &owners, TTL).await.unwrap();
        assert_eq!(
            got.iter().map(|j| j.key.as_str()).collect::<Vec<_>>(),
            ["0", "1", "2"]
        );
        for (j, o) in got.iter().zip(&owners) {
            assert_eq!(j.lease_owner.as_deref(), Some(o.as_str()));
            assert_eq!((j.state, j.attempts), (JobState::Running, 1));
        }
        let rest = q.lease_many("pdf", &owners, TTL).await.unwrap();
        assert_eq!(rest.len(), 2, "only what is ready");
        assert!(q.lease_many("pdf", &owners, TTL).await.unwrap().is_empty());
        assert!(q.lease_many("pdf", &[], TTL).await.unwrap().is_empty());
    }

    pub async fn prune_deletes_old_finished_jobs_in_batches(q: Arc<dyn JobStore>) {
        let q = q.as_ref();
        q.enqueue((0..7).map(|i| job(&i.to_string())).collect())
            .await
            .unwrap();
        for _ in 0..5 {
            let j = lease(q, "w").await.unwrap();
            q.complete(&j.lease().unwrap()).await.unwrap();
        }
        let running = lease(q, "w").await.unwrap();
        assert_eq!(q.prune(Duration::from_secs(3600), 10).await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(q.prune(Duration::from_millis(1), 2).await.unwrap(), 2);
        assert_eq!(q.prune(Duration::from_millis(1), 10).await.unwrap(), 3);
        assert_eq!(q.prune(Duration::from_millis(1), 10).await.unwrap(), 0);
        let counts = q.stats(None).await.unwrap().counts;
        assert_eq!(
            (counts.running, counts.pending, counts.succeeded),
            (1, 1, 0)
        );
        assert!(q.get(running.id).await.unwrap().is_some());
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

    pub async fn queue_names_with_quotes_lease_only_their_own_jobs_and_a_nul_is_refused(
        q: Arc<dyn JobStore>,
    ) {
        let names = [
            "it's",
            "a'); DROP TABLE jobs; --",
            "back\\slash",
            "50%_off",
            "nul",
            "pdf",
            "ünï",
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
        // No store can hold a NUL byte, so none takes one: the same names work everywhere.
        let nul = NewJob {
            queue: "nul\0name".into(),
            ..job("x")
        };
        let err = q.enqueue(vec![nul]).await.unwrap_err().to_string();
        assert!(err.contains("NUL byte"), "{err}");
        assert!(q.lease("nul\0name", "w", TTL).await.is_err());
        let bad_key = NewJob {
            key: "k\0".into(),
            ..job("y")
        };
        assert!(q.enqueue(vec![bad_key]).await.is_err());
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
            nodes_join_beat_lead_and_leave_and_a_live_name_is_not_taken,
            lease_many_claims_up_to_the_free_slots_in_order,
            prune_deletes_old_finished_jobs_in_batches,
            a_failed_job_waits_out_its_backoff,
            higher_priority_first_then_oldest,
            quarantine_now_skips_the_retries,
            cancel_and_retry_by_id_and_by_filter,
            stats_and_lists_filter_by_queue_state_and_text,
            purge_deletes_only_old_finished_jobs,
            mark_succeeded_and_rebuild_done_reconcile_with_outputs,
            complete_and_lease_hands_over_the_next_job,
            concurrent_workers_lose_and_duplicate_nothing,
            queue_names_with_quotes_lease_only_their_own_jobs_and_a_nul_is_refused,
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

/// Each case gets a database of its own in one throwaway cluster for the whole run.
async fn postgres_store() -> (String, Arc<dyn JobStore>) {
    let cluster = steward_pgtest::shared();
    let db = cluster.create_db();
    let url = cluster.url(&db);
    let store = PgStore::open(
        &url,
        &steward_config::mask_password(&url),
        true,
        PgOpen::Create,
    )
    .await
    .unwrap();
    (db, Arc::new(store))
}

conformance!(postgres, crate::postgres_store);
