//! systemd's notify protocol, for `Type=notify` units: `READY=1` once every service that
//! should be up is up, `STATUS=` saying what is still awaited, `WATCHDOG=1` at half of
//! `WatchdogSec` while the agent's loop is alive, and `STOPPING=1` when it stops.
//! Without `NOTIFY_SOCKET` (not under systemd) all of this is off.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;
use steward_api::awaited;
use steward_supervise::Supervisor;
use tokio::sync::watch;

pub struct SystemdNotify {
    sock: UnixDatagram,
    addr: SocketAddr,
    watchdog: Option<Duration>,
}

impl SystemdNotify {
    /// Takes `NOTIFY_SOCKET` and the watchdog settings out of the environment, so that no
    /// service inherits them (a service's READY=1 must not reach systemd as ours). Call it
    /// before any thread starts.
    pub fn take_from_env() -> Option<SystemdNotify> {
        let path = std::env::var_os("NOTIFY_SOCKET");
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            std::env::remove_var(var);
        }
        let path = path?;
        let addr = match address(path.as_encoded_bytes()) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET {path:?} is not a socket address ({e}); systemd will not hear that steward is ready");
                return None;
            }
        };
        let sock = match UnixDatagram::unbound() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot open a socket for NOTIFY_SOCKET: {e}");
                return None;
            }
        };
        let ours = pid.is_none_or(|p| p.trim() == std::process::id().to_string());
        let watchdog = usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(Duration::from_micros);
        Some(SystemdNotify {
            sock,
            addr,
            watchdog,
        })
    }

    fn send(&self, message: &str) {
        if let Err(e) = self.sock.send_to_addr(message.as_bytes(), &self.addr) {
            tracing::warn!("cannot tell systemd {message:?}: {e}");
        }
    }

    /// Says READY=1 once every service is up, keeps STATUS= current, pets the watchdog,
    /// and says STOPPING=1 when `shutdown` turns true.
    pub async fn run(self, supervisor: Arc<Supervisor>, mut shutdown: watch::Receiver<bool>) {
        let mut changes = supervisor.changes();
        let mut ready = false;
        let mut said = String::new();
        let mut pet = self.watchdog.map(|w| tokio::time::interval(w / 2));
        loop {
            let statuses = supervisor.status();
            let awaited = awaited(&statuses);
            let status = if awaited.is_empty() {
                format!("STATUS={} service(s) up", statuses.len())
            } else {
                format!("STATUS=waiting for {}", awaited.join(", "))
            };
            let mut message = String::new();
            if awaited.is_empty() && !ready {
                message.push_str("READY=1\n");
                ready = true;
            }
            if status != said {
                message.push_str(&status);
                said = status;
            }
            if !message.is_empty() {
                self.send(message.trim_end());
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                _ = tick(pet.as_mut()) => self.send("WATCHDOG=1"),
                _ = shutdown.wait_for(|&s| s) => break,
            }
        }
        self.send("STOPPING=1\nSTATUS=stopping");
    }
}

async fn tick(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// `/run/…` is a path; `@name` (as systemd writes it) is in the abstract namespace.
fn address(raw: &[u8]) -> std::io::Result<SocketAddr> {
    match raw.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(raw)),
    }
}
