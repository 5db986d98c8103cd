//! A [`JobFilter`] as SQL for PostgreSQL: a WHERE clause with numbered placeholders, and
//! its values.

use crate::job::JobFilter;
use tokio_postgres::types::ToSql;

pub type Param = Box<dyn ToSql + Sync + Send>;

fn push(params: &mut Vec<Param>, p: Param) -> String {
    params.push(p);
    format!("${}", params.len())
}

/// The clause for `f`; its values are appended to `params` (numbered after those there).
pub fn where_clause(f: &JobFilter, params: &mut Vec<Param>) -> String {
    let mut parts = Vec::new();
    if let Some(q) = &f.queue {
        parts.push(format!("queue = {}", push(params, Box::new(q.clone()))));
    }
    if let Some(s) = f.state {
        parts.push(format!(
            "state = {}",
            push(params, Box::new(s.as_str().to_string()))
        ));
    }
    if let Some(t) = &f.text {
        // strpos, not LIKE: the text is matched as written, with no wildcards in it.
        let p = push(params, Box::new(t.clone()));
        parts.push(format!(
            "(strpos(key, {p}) > 0 OR strpos(COALESCE(payload->>'input', ''), {p}) > 0)"
        ));
    }
    if parts.is_empty() {
        "true".to_string()
    } else {
        parts.join(" AND ")
    }
}

/// `LIMIT $n`, or nothing.
pub fn limit(f: &JobFilter, params: &mut Vec<Param>) -> String {
    match f.limit {
        Some(l) => format!(
            "LIMIT {}",
            push(params, Box::new(l.min(i64::MAX as usize) as i64))
        ),
        None => String::new(),
    }
}
