//! A [`JobFilter`] as SQL: a WHERE clause and its bound values.

use crate::job::JobFilter;
use rusqlite::types::Value;

/// `(clause, values)`: the clause holds `?` placeholders for the values, in order.
pub(super) fn where_clause(f: &JobFilter) -> (String, Vec<Value>) {
    let mut parts = Vec::new();
    let mut values = Vec::new();
    if let Some(q) = &f.queue {
        parts.push("queue = ?");
        values.push(Value::Text(q.clone()));
    }
    if let Some(s) = f.state {
        parts.push("state = ?");
        values.push(Value::Text(s.as_str().to_string()));
    }
    if let Some(t) = &f.text {
        // instr, not LIKE: the text is matched as written, with no wildcards in it.
        parts.push(
            "(instr(key, ?) > 0 OR instr(COALESCE(json_extract(payload, '$.input'), ''), ?) > 0)",
        );
        values.push(Value::Text(t.clone()));
        values.push(Value::Text(t.clone()));
    }
    let clause = if parts.is_empty() {
        "1".to_string()
    } else {
        parts.join(" AND ")
    };
    (clause, values)
}

/// The `LIMIT` for a filter (`-1`: none).
pub(super) fn limit(f: &JobFilter) -> i64 {
    f.limit.map_or(-1, |l| l.min(i64::MAX as usize) as i64)
}
