//! `[queue]`: where the jobs live (the embedded SQLite, or PostgreSQL shared by many
//! nodes) and the store's upkeep while the agent runs.

use crate::context::Ctx;
use crate::{ConfigError, HumanDuration};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub url: Option<String>,
    pub notify: Option<bool>,
    pub keep_finished: Option<HumanDuration>,
    pub on_unreachable: Option<OnUnreachable>,
    pub backup_interval: Option<HumanDuration>,
    pub backups_kept: Option<usize>,
}

/// What `up` does when the queue's database cannot be reached at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnUnreachable {
    /// Say so, start the services that need no queue, and keep trying.
    #[default]
    Retry,
    /// Exit with an error.
    Exit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueSettings {
    /// PostgreSQL, shared by many nodes; `None`: `queue.db` in the state dir.
    pub url: Option<QueueUrl>,
    /// LISTEN/NOTIFY wake-ups (off for PgBouncer in transaction mode); polling runs anyway.
    pub notify: bool,
    /// Finished jobs older than this are pruned by the leader.
    pub keep_finished: HumanDuration,
    pub on_unreachable: OnUnreachable,
    /// Online backups of `queue.db` into `state_dir/backups/` (SQLite only).
    pub backup_interval: HumanDuration,
    /// The newest this many backups are kept.
    pub backups_kept: usize,
}

/// A database URL. It may hold a password, so it is shown and serialized masked
/// (`postgresql://steward:***@db/steward`); only [`QueueUrl::expose`] gives it whole.
#[derive(Clone, PartialEq, Eq)]
pub struct QueueUrl {
    url: String,
}

impl QueueUrl {
    pub fn new(url: String) -> Self {
        QueueUrl { url }
    }

    /// The URL itself, for the driver.
    pub fn expose(&self) -> &str {
        &self.url
    }

    /// The URL with any password replaced by `***`.
    pub fn masked(&self) -> String {
        mask_password(&self.url)
    }
}

impl std::fmt::Debug for QueueUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked())
    }
}

impl std::fmt::Display for QueueUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked())
    }
}

impl Serialize for QueueUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.masked())
    }
}

/// Masks the password of a `postgresql://user:password@host/db` URL, of a
/// `password=` query parameter, and of a libpq `key=value` string's `password`.
pub fn mask_password(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = &out[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                let (start, end) = (scheme_end + 3 + colon + 1, scheme_end + 3 + at);
                out.replace_range(start..end, "***");
            }
        }
    }
    // `password=…` up to the next `&` (query) or space (key=value), wherever it is.
    let mut from = 0;
    while let Some(i) = out[from..].find("password=") {
        let start = from + i + "password=".len();
        let bounded = out[..from + i]
            .chars()
            .last()
            .is_none_or(|c| matches!(c, '?' | '&' | ' '));
        let end = out[start..]
            .find(['&', ' '])
            .map_or(out.len(), |e| start + e);
        if bounded && end > start {
            out.replace_range(start..end, "***");
            from = start + 3;
        } else {
            from = start;
        }
    }
    out
}

/// `url` as written, or read from `env:VAR`: an unset or empty variable is an error naming
/// it, never the embedded queue instead.
fn resolve_url(ctx: &Ctx, raw: String) -> Result<QueueUrl, ConfigError> {
    let at = ["queue", "url"];
    let url = match raw.strip_prefix("env:") {
        Some(var) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
            Ok(_) => {
                return Err(ctx.err(
                    &at,
                    format!("env:{var} is empty; set it to the PostgreSQL URL, or remove [queue] url to use the embedded queue"),
                ))
            }
            Err(_) => {
                return Err(ctx.err(
                    &at,
                    format!("env:{var} is not set (or not UTF-8); set it to the PostgreSQL URL, or remove [queue] url to use the embedded queue"),
                ))
            }
        },
        None => raw,
    };
    let uri = url.starts_with("postgresql://") || url.starts_with("postgres://");
    let key_value = !url.contains("://") && url.contains('=');
    if !(uri || key_value) {
        return Err(ctx.err(
            &at,
            format!(
                "{} is not a PostgreSQL URL; write postgresql://USER@HOST/DATABASE (or libpq's host=… dbname=…)",
                mask_password(&url)
            ),
        ));
    }
    if url.contains('\0') {
        return Err(ctx.err(&at, "holds a NUL byte"));
    }
    Ok(QueueUrl::new(url))
}

pub(crate) fn resolve(ctx: &Ctx, raw: Option<RawQueue>) -> Result<QueueSettings, ConfigError> {
    let raw = raw.unwrap_or_default();
    let queue = QueueSettings {
        url: raw.url.map(|u| resolve_url(ctx, u)).transpose()?,
        notify: raw.notify.unwrap_or(true),
        keep_finished: raw.keep_finished.unwrap_or(HumanDuration::secs(7 * 86_400)),
        on_unreachable: raw.on_unreachable.unwrap_or_default(),
        backup_interval: raw.backup_interval.unwrap_or(HumanDuration::secs(600)),
        backups_kept: raw.backups_kept.unwrap_or(5),
    };
    if queue.backup_interval.0 < std::time::Duration::from_secs(1) {
        return Err(ctx.err(
            &["queue", "backup_interval"],
            "must be at least 1s (a backup copies the whole queue.db)",
        ));
    }
    if queue.backups_kept == 0 {
        return Err(ctx.err(
            &["queue", "backups_kept"],
            "must be at least 1: the newest backup is what `steward queue restore` brings back",
        ));
    }
    if queue.keep_finished.0 < std::time::Duration::from_secs(60) {
        return Err(ctx.err(
            &["queue", "keep_finished"],
            "must be at least 1m (the done-set is what keeps a finished file from running again)",
        ));
    }
    Ok(queue)
}

#[cfg(test)]
mod tests {
    use super::mask_password as m;

    #[test]
    fn passwords_are_masked_wherever_they_are() {
        assert_eq!(
            m("postgresql://steward:s3cr3t@db.internal:5432/steward"),
            "postgresql://steward:***@db.internal:5432/steward"
        );
        assert_eq!(
            m("postgresql://steward@db/steward"),
            "postgresql://steward@db/steward"
        );
        assert_eq!(
            m("postgres://u:p%40ss@h/d?sslmode=require&password=x2"),
            "postgres://u:***@h/d?sslmode=require&password=***"
        );
        assert_eq!(
            m("host=db user=steward password=hunter2 dbname=steward"),
            "host=db user=steward password=*** dbname=steward"
        );
        assert_eq!(
            m("postgresql://h/d?application_name=password=x"),
            "postgresql://h/d?application_name=password=x"
        );
        assert_eq!(m("postgresql://u:@h/d"), "postgresql://u:***@h/d");
    }
}
