//! libpq's password file (`~/.pgpass`, or `PGPASSFILE`): lines of
//! `hostname:port:database:username:password`, `*` matching anything, `\:` and `\\`
//! escaping. As libpq does, a file that others can read is ignored (with a warning).

use std::path::{Path, PathBuf};

/// One line's fields, unescaped.
fn fields(line: &str) -> Option<[String; 5]> {
    let mut out: Vec<String> = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    out.last_mut()?.push(next);
                }
            }
            ':' if out.len() < 5 => out.push(String::new()),
            c => out.last_mut()?.push(c),
        }
    }
    out.try_into().ok()
}

/// The password for the first line matching the connection, if any.
pub fn lookup(text: &str, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let port = port.to_string();
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(fields)
        .find(|[h, p, d, u, _]| {
            let matches = |field: &str, value: &str| field == "*" || field == value;
            matches(h, host) && matches(p, &port) && matches(d, db) && matches(u, user)
        })
        .map(|[.., password]| password)
}

/// `PGPASSFILE`, else `~/.pgpass`.
pub fn default_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PGPASSFILE") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass"))
}

/// The file's text, unless it is missing, or readable by group or others.
pub fn read(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "password file {} is readable by others; it is ignored (chmod 0600 it)",
            path.display()
        );
        return None;
    }
    std::fs::read_to_string(path).ok()
}

#[cfg(test)]
mod tests {
    use super::lookup;

    #[test]
    fn the_first_matching_line_wins_with_wildcards_and_escapes() {
        let text = "# comment\n\
                    db.internal:5432:steward:steward:first\n\
                    *:*:*:steward:any\\:host\n\
                    other:5432:x\\\\y:u:p\n";
        assert_eq!(
            lookup(text, "db.internal", 5432, "steward", "steward").as_deref(),
            Some("first")
        );
        assert_eq!(
            lookup(text, "elsewhere", 6000, "steward", "steward").as_deref(),
            Some("any:host")
        );
        assert_eq!(
            lookup(text, "other", 5432, "x\\y", "u").as_deref(),
            Some("p")
        );
        assert_eq!(lookup(text, "other", 5432, "x", "nobody"), None);
        assert_eq!(lookup("short:line\n", "short", 5432, "a", "b"), None);
    }
}
