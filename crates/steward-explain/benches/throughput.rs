//! `explain` throughput on mixed logs: MB/s on one core, against a plain scan that only
//! splits lines and runs the naive `(?i)error|exception|fail` regex (the floor of any
//! line-oriented reader), in the same run. Run through `bench/explain/run.sh`.
//!
//! cargo bench -p steward-explain --bench throughput -- [MEGABYTES]

use std::time::Instant;

fn mixed_log(bytes: usize) -> Vec<u8> {
    let lines = [
        "2026-03-02T10:14:07+0000 gpu-node-3 ocr[88100]: INFO processed page 17 of 230 in 412 ms",
        "[2024-01-19 00:48:01 +0000] [2973] [INFO] Booting worker with pid: 2976",
        "INFO:     127.0.0.1:51000 - \"POST /v1/completions HTTP/1.1\" 200 OK",
        "{\"log\":\"step 1200 loss 1.873 lr 3e-4\\n\",\"stream\":\"stdout\",\"time\":\"2026-03-06T11:02:33.1Z\"}",
        "  File \"/opt/venv/lib/python3.11/site-packages/torch/nn/modules/module.py\", line 1739, in _wrapped_call_impl",
        "WARNING: Retrying (Retry(total=4)) after connection broken by 'NewConnectionError'",
        "ERROR 03-08 14:00:01 worker.py:60] request 77 failed: upstream returned 502",
        "kernel: [  518.050606] eth0: link up, 25000 Mbps full duplex",
    ];
    let rare = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.";
    let mut out = Vec::with_capacity(bytes + 200);
    let mut i = 0usize;
    while out.len() < bytes {
        let l = if i % 5000 == 4999 {
            rare
        } else {
            lines[i % lines.len()]
        };
        out.extend_from_slice(l.as_bytes());
        out.push(b'\n');
        i += 1;
    }
    out
}

/// Bytes from a fixed xorshift: binary junk with no line structure to speak of.
fn random_bytes(bytes: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Every line an `error:` and every line different: nothing for templates to merge.
fn unique_errors(bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + 200);
    let mut i = 0u64;
    while out.len() < bytes {
        let w = i.wrapping_mul(0x2545_F491_4F6C_DD1D);
        out.extend_from_slice(
            format!(
                "error: step{i:x} in worker{w:x} lost shard{:x} twice\n",
                w >> 20
            )
            .as_bytes(),
        );
        i += 1;
    }
    out
}

/// Seconds `explain` takes over `text`.
fn time_explain(text: &[u8]) -> f64 {
    let t = Instant::now();
    let _ = steward_explain::explain_text(text);
    t.elapsed().as_secs_f64()
}

fn main() {
    let mb: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let log = mixed_log(mb << 20);
    let naive = regex::Regex::new(r"(?i)error|exception|fail").unwrap();
    let t = Instant::now();
    let mut hits = 0usize;
    for line in log.split(|&b| b == b'\n') {
        if naive.is_match(&String::from_utf8_lossy(line)) {
            hits += 1;
        }
    }
    let naive_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let report = steward_explain::explain_text(&log);
    let ours_s = t.elapsed().as_secs_f64();
    let rate = |s: f64| mb as f64 / s;
    println!("| reader | MB/s (1 core) |");
    println!("|---|---|");
    println!(
        "| naive scan (one regex, no ranking; {hits} hits) | {:.0} |",
        rate(naive_s)
    );
    println!(
        "| steward explain (every signature, ranking, templates) | {:.0} |",
        rate(ours_s)
    );
    println!(
        "\n{mb} MB, {} lines; top finding: {}",
        report.lines,
        report.one_line().unwrap_or_default()
    );
    // Hostile inputs: the cost must stay linear, with no slow path for junk.
    let five = 5 << 20;
    println!("\n| 5 MB of | seconds |\n|---|---|");
    println!(
        "| random bytes | {:.2} |",
        time_explain(&random_bytes(five))
    );
    println!(
        "| unique `error:` lines | {:.2} |",
        time_explain(&unique_errors(five))
    );
    println!(
        "| the mixed log above | {:.2} |",
        time_explain(&mixed_log(five))
    );
}
