//! For the benchmarks: a durable throwaway cluster (fsync and synchronous commits on),
//! shared by every measurement of one run. Prints the superuser's URL of database
//! `postgres`, then reads lines from stdin: each `db` creates a new, empty database and
//! prints its URL. At the end of stdin the cluster stops and its files are removed.
//!
//!   cargo run --release --locked -p steward-pgtest --bin pg-cluster

use std::io::{BufRead, Write};

fn main() {
    let cluster = steward_pgtest::Cluster::start(true);
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{}", cluster.url("postgres"));
    let _ = out.flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "db" {
            let db = cluster.create_db();
            let _ = writeln!(out, "{}", cluster.url(&db));
            let _ = out.flush();
        }
    }
}
