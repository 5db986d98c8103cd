//! Whether the node's DNS resolvers answer: one query each, on the network (the only host
//! read that sends traffic, so `doctor --no-dns` skips it).

use serde::Serialize;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// How one resolver answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsAnswer {
    pub resolver: String,
    /// Milliseconds to the answer, or why there was none within the limit.
    pub result: Result<u64, String>,
}

/// Asks each resolver for the root's NS records and waits up to 2 s for any answer: an
/// answer of any kind means the resolver is alive.
pub fn probe_resolvers(resolvers: &[String]) -> Vec<DnsAnswer> {
    resolvers
        .iter()
        .map(|r| DnsAnswer {
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
