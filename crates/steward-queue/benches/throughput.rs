//! Queue throughput, end to end (enqueue, lease, complete), with durable commits, at 1, 8
//! and 64 concurrent in-process workers; against Redis (`appendfsync always` and
//! `everysec`, LPUSH + BLMOVE + LREM, the reliable-queue pattern) in the same run.
//! Run through `bench/queue/run.py`, which prints the table for the README.
//!
//! cargo bench -p steward-queue --bench throughput -- [JOBS]

use std::sync::Arc;
use std::time::Instant;
use steward_queue::{JobStore, SqliteStore};

mod common;

const WORKERS: [usize; 3] = [1, 8, 64];

/// `workers` tasks on the agent's runtime (two threads), each leasing and completing
/// through the store's async front until the queue is empty.
async fn steward(jobs: usize, workers: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let q: Arc<dyn JobStore> = Arc::new(SqliteStore::open(&dir.path().join("queue.db")).unwrap());
    common::drain_rate(q, jobs, workers).await
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn redis(jobs: usize, workers: usize, fsync: &str) -> Option<f64> {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
        ])
        .args(["--appendfsync", fsync, "--dir", dir.path().to_str()?])
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let url = format!("redis://127.0.0.1:{port}/");
    let client = redis::Client::open(url).ok()?;
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    let mut con = loop {
        if let Ok(c) = client.get_connection() {
            break c;
        }
        if Instant::now() > deadline {
            let _ = server.kill();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let start = Instant::now();
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(1000) {
        let payloads: Vec<String> = chunk
            .iter()
            .map(|i| format!("{{\"input\":\"/in/{i}\"}}"))
            .collect();
        let _: () = redis::cmd("LPUSH")
            .arg("jobs")
            .arg(&payloads)
            .query(&mut con)
            .ok()?;
    }
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let client = client.clone();
            std::thread::spawn(move || {
                let mut con = client.get_connection().unwrap();
                let processing = format!("processing:{w}");
                loop {
                    let job: Option<String> = redis::cmd("BLMOVE")
                        .arg("jobs")
                        .arg(&processing)
                        .arg("RIGHT")
                        .arg("LEFT")
                        .arg(0.05)
                        .query(&mut con)
                        .unwrap();
                    let Some(job) = job else { break };
                    let _: () = redis::cmd("LREM")
                        .arg(&processing)
                        .arg(1)
                        .arg(job)
                        .query(&mut con)
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let rate = jobs as f64 / start.elapsed().as_secs_f64();
    let _ = server.kill();
    let _ = server.wait();
    Some(rate)
}

fn main() {
    let jobs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    println!("| workers | steward (SQLite, synchronous=FULL) | Redis appendfsync always | Redis appendfsync everysec |");
    println!("|---|---|---|---|");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for w in WORKERS {
        let s = runtime.block_on(steward(jobs, w));
        let fmt =
            |r: Option<f64>| r.map_or("n/a (no redis-server)".into(), |r| format!("{r:.0} jobs/s"));
        let always = redis(jobs, w, "always");
        let everysec = redis(jobs, w, "everysec");
        println!(
            "| {w} | {s:.0} jobs/s | {} | {} |",
            fmt(always),
            fmt(everysec)
        );
    }
}
