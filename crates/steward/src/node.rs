//! The wiring behind `host`, `plan`, `doctor` and `up`'s preflight: gather the facts (the
//! effects), then hand them to the pure crates.

use anyhow::Result;
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};
use steward_config::Config;
use steward_events::{EventKind, EventLog};
use steward_host::{HostFacts, Sysroot};
use steward_plan::{AdmissionInputs, Plan};

/// The highest memory use seen per service in `events.jsonl` on earlier runs.
pub fn observed_peaks(state_dir: &Path) -> BTreeMap<String, u64> {
    let mut peaks = BTreeMap::new();
    for ev in EventLog::read_all(&state_dir.join("events.jsonl")).unwrap_or_default() {
        if let (
            Some(name),
            EventKind::Exited {
                peak_memory: Some(p),
                ..
            },
        ) = (&ev.service, &ev.kind)
        {
            let service = name.split('#').next().unwrap_or(name).to_string();
            let e = peaks.entry(service).or_insert(0);
            *e = (*e).max(*p);
        }
    }
    peaks
}

/// Plans `config` against `facts`.
pub fn plan(config: &Config, facts: &HostFacts) -> Result<Plan> {
    let peaks = observed_peaks(&config.state_dir);
    let input = AdmissionInputs {
        mem: facts.memory.as_ref(),
        cpu: facts.cpu.as_ref(),
        gpus: &facts.gpus,
        observed_peaks: &peaks,
    };
    steward_plan::plan(config, &input)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config.path.display()))
}

/// Asks each resolver for the root's NS records and waits up to 2 s for any answer: an
/// answer of any kind means the resolver is alive.
pub fn probe_resolvers(resolvers: &[String]) -> Vec<steward_doctor::DnsAnswer> {
    resolvers
        .iter()
        .map(|r| steward_doctor::DnsAnswer {
            resolver: r.clone(),
            result: probe(r),
        })
        .collect()
}

fn probe(resolver: &str) -> Result<u64, String> {
    let ip: std::net::IpAddr = resolver
        .parse()
        .map_err(|_| format!("\"{resolver}\" is not an IP address"))?;
    let addr = SocketAddr::new(ip, 53);
    let bind = if ip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let sock = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    sock.connect(addr).map_err(|e| e.to_string())?;
    let id = (std::process::id() & 0xffff) as u16;
    // Header: id, flags (recursion desired), 1 question; question: root name, type NS, class IN.
    let mut query = Vec::with_capacity(17);
    query.extend_from_slice(&id.to_be_bytes());
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    query.extend_from_slice(&[0, 0, 2, 0, 1]);
    let start = Instant::now();
    sock.send(&query).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 512];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) if n >= 2 && buf[..2] == id.to_be_bytes() => {
                return Ok(start.elapsed().as_millis() as u64)
            }
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("no answer within 2 s".into())
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The host's facts, read under `sysroot` (the live host by default).
pub fn gather(sysroot: Option<&Path>, state_dir: &Path) -> HostFacts {
    let root = sysroot.map_or_else(Sysroot::live, Sysroot::at);
    HostFacts::gather(&root, state_dir)
}
