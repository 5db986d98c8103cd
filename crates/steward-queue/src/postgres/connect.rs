//! From `[queue] url` to a connection config, the way libpq users expect: the URL first,
//! then `PGPASSWORD`, then the password file; the user defaults to `PGUSER` or the OS
//! user, the host to `PGHOST` or the local socket directory.

use super::pgpass;
use crate::QueueError;
use std::time::Duration;
use tokio_postgres::config::{Host, SslMode};

/// How long a connection attempt may take before it counts as a failure.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `url` (shown as `masked` in errors) as a config ready to connect.
pub fn config(url: &str, masked: &str) -> Result<tokio_postgres::Config, QueueError> {
    let mut cfg: tokio_postgres::Config = url.parse().map_err(|e| {
        QueueError::Invalid(format!(
            "{masked} is not a PostgreSQL URL steward can read ({e})"
        ))
    })?;
    if cfg.get_ssl_mode() == SslMode::Require {
        return Err(QueueError::Invalid(format!(
            "{masked} asks for sslmode=require, but this steward connects without TLS; reach the database over a trusted network or a tunnel (sslmode=disable or prefer)"
        )));
    }
    if cfg.get_hosts().is_empty() {
        match std::env::var("PGHOST") {
            Ok(h) if !h.is_empty() => {
                cfg.host(&h);
            }
            _ => {
                cfg.host_path("/var/run/postgresql");
            }
        }
    }
    if cfg.get_user().is_none() {
        let user = std::env::var("PGUSER")
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "postgres".into());
        cfg.user(&user);
    }
    if cfg.get_password().is_none() {
        if let Some(pw) = std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()) {
            cfg.password(pw);
        } else if let Some(pw) = from_password_file(&cfg) {
            cfg.password(pw);
        }
    }
    cfg.application_name("steward")
        .connect_timeout(CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    Ok(cfg)
}

/// The password file's entry for the first host of `cfg`.
fn from_password_file(cfg: &tokio_postgres::Config) -> Option<String> {
    let text = pgpass::read(&pgpass::default_path()?)?;
    let host = match cfg.get_hosts().first()? {
        Host::Tcp(h) => h.clone(),
        // libpq matches a socket directory as "localhost".
        Host::Unix(_) => "localhost".to_string(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let user = cfg.get_user().unwrap_or_default();
    let db = cfg.get_dbname().unwrap_or(user);
    pgpass::lookup(&text, &host, port, db, user)
}
