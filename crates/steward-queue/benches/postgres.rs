//! The PostgreSQL store, measured in one run against the same cluster (fsync and
//! synchronous commits on):
//! 1. end-to-end jobs/s (enqueue, lease, complete) at 1, 8 and 64 workers, against
//!    Graphile Worker (bench/queue/graphile.mjs) on the same cluster;
//! 2. the claim's p50/p99 on a queue with no history against one with HISTORY finished
//!    jobs and HISTORY/10 pending, on both stores (SQLite and PostgreSQL).
//!
//! cargo bench -p steward-queue --bench postgres -- [JOBS] [HISTORY]
//! With STEWARD_BENCH_PG=postgresql://…/postgres it uses that cluster (bench/queue/run.py
//! passes its own); without, it starts a throwaway one.

mod common;

use std::path::Path;
use std::sync::Arc;
use steward_queue::{JobStore, PgOpen, PgStore, SqliteStore};

const WORKERS: [usize; 3] = [1, 8, 64];
const CLAIMS: usize = 2000;

struct Databases {
    base: String,
    next: usize,
    _own: Option<steward_pgtest::Cluster>,
}

impl Databases {
    fn new() -> Databases {
        match std::env::var("STEWARD_BENCH_PG") {
            Ok(base) => Databases {
                base,
                next: 0,
                _own: None,
            },
            Err(_) => {
                let c = steward_pgtest::Cluster::start(true);
                Databases {
                    base: c.url("postgres"),
                    next: 0,
                    _own: Some(c),
                }
            }
        }
    }

    /// A new, empty database on the cluster; its URL.
    async fn create(&mut self) -> String {
        self.next += 1;
        let name = format!("bench_{}_{}", std::process::id(), self.next);
        let (client, conn) = tokio_postgres::connect(&self.base, tokio_postgres::NoTls)
            .await
            .expect("connect to the bench cluster");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let (prefix, _) = self.base.rsplit_once('/').unwrap();
        format!("{prefix}/{name}")
    }
}

async fn pg_store(url: &str) -> Arc<dyn JobStore> {
    Arc::new(
        PgStore::open(url, "bench", true, PgOpen::Create)
            .await
            .unwrap(),
    )
}

/// Graphile Worker's jobs/s, or why there is none.
fn graphile(url: &str, jobs: usize, workers: usize) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/queue/graphile.mjs");
    let modules = script.with_file_name("node_modules/graphile-worker");
    if !modules.exists() {
        return "n/a (npm install --prefix bench/queue)".into();
    }
    match std::process::Command::new("node")
        .arg(&script)
        .args([url, &jobs.to_string(), &workers.to_string()])
        .output()
    {
        Ok(o) if o.status.success() => {
            format!("{} jobs/s", String::from_utf8_lossy(&o.stdout).trim())
        }
        Ok(o) => format!("failed: {}", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => format!("n/a (node: {e})"),
    }
}

/// The claim on `q` with no history, then on a queue with `history` finished jobs and
/// `history / 10` pending, at once and after `settle` (what autovacuum does in time):
/// (p50, p99) of each, in ms.
async fn claim_cost<F: std::future::Future<Output = ()>>(
    empty: &dyn JobStore,
    full: &dyn JobStore,
    history: usize,
    settle: F,
) -> [(f64, f64); 3] {
    common::fill(empty, 0, CLAIMS).await;
    let before = common::claim_latency(empty, CLAIMS).await;
    common::fill(full, 0, history + history / 10).await;
    common::finish_first(full, history as i64).await;
    let at_once = common::claim_latency(full, CLAIMS).await;
    settle.await;
    let settled = common::claim_latency(full, CLAIMS).await;
    [before, at_once, settled]
}

fn row(store: &str, [empty, at_once, settled]: [(f64, f64); 3]) {
    println!(
        "| {store} | {:.2} / {:.2} ms | {:.2} / {:.2} ms ({:.2}x) | {:.2} / {:.2} ms ({:.2}x) |",
        empty.0,
        empty.1,
        at_once.0,
        at_once.1,
        at_once.1 / empty.1,
        settled.0,
        settled.1,
        settled.1 / empty.1
    );
}

/// `VACUUM ANALYZE` of the jobs table, as autovacuum runs it after a burst, then a
/// checkpoint: the burst's writes are flushed, so their I/O is not counted as the claim's.
async fn vacuum(url: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute("VACUUM ANALYZE steward_jobs")
        .await
        .unwrap();
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<usize>().ok());
    let jobs = args.next().unwrap_or(20_000);
    let history = args.next().unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut dbs = Databases::new();
    println!("| workers | steward (PostgreSQL) | Graphile Worker 0.18 |");
    println!("|---|---|---|");
    for w in WORKERS {
        let url = runtime.block_on(dbs.create());
        let s = runtime.block_on(async { common::drain_rate(pg_store(&url).await, jobs, w).await });
        let peer = graphile(&runtime.block_on(dbs.create()), jobs, w);
        println!("| {w} | {s:.0} jobs/s | {peer} |");
    }
    println!();
    println!(
        "| store | claim p50 / p99, no history | {history} finished + {} pending, right after they finished (p99 ratio) | the same after VACUUM and a checkpoint (p99 ratio) |",
        history / 10
    );
    println!("|---|---|---|---|");
    let dir = tempfile::tempdir().unwrap();
    let empty = SqliteStore::open(&dir.path().join("empty.db")).unwrap();
    let full = SqliteStore::open(&dir.path().join("full.db")).unwrap();
    // SQLite removes an index entry with its row: it has nothing to settle.
    row(
        "SQLite",
        runtime.block_on(claim_cost(&empty, &full, history, async {})),
    );
    let cost = runtime.block_on(async {
        let empty = pg_store(&dbs.create().await).await;
        let url = dbs.create().await;
        let full = pg_store(&url).await;
        claim_cost(empty.as_ref(), full.as_ref(), history, vacuum(&url)).await
    });
    row("PostgreSQL", cost);
}
