//! `NOTIFY_SOCKET`, sd_notify style: a process that knows when it is ready sends
//! `READY=1` in a datagram. The socket is in the abstract namespace (`@…`), so it needs no
//! file and no path-length budget.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::SocketAddr;

pub struct NotifySocket {
    sock: tokio::net::UnixDatagram,
    name: String,
}

impl NotifySocket {
    /// Binds `@steward/<unit>/<nonce>`; a fresh name per run, so a late message from an
    /// earlier run cannot mark this one ready.
    pub fn bind(unit: &str) -> std::io::Result<NotifySocket> {
        let name = format!("steward/{unit}/{:08x}", fastrand::u32(..));
        let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
        let std_sock = std::os::unix::net::UnixDatagram::bind_addr(&addr)?;
        std_sock.set_nonblocking(true)?;
        Ok(NotifySocket {
            sock: tokio::net::UnixDatagram::from_std(std_sock)?,
            name,
        })
    }

    /// The value for `NOTIFY_SOCKET`: `@` marks the abstract namespace.
    pub fn env_value(&self) -> String {
        format!("@{}", self.name)
    }

    pub async fn recv(&self) -> String {
        let mut buf = vec![0u8; 4096];
        loop {
            if let Ok(n) = self.sock.recv(&mut buf).await {
                return String::from_utf8_lossy(&buf[..n]).into_owned();
            }
        }
    }
}
