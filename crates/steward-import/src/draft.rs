//! A steward service as the import builds it: its keys as TOML text with the note each
//! carries, before it is written out (and before worker chains are collapsed).

use std::collections::BTreeMap;

/// What a replica set waits for in a dependency (steward's `depends_on` conditions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Condition {
    Started,
    Completed,
    Healthy,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Started => "started",
            Condition::Completed => "completed",
            Condition::Healthy => "healthy",
        }
    }
}

/// Which GPUs a service runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gpus {
    Indexes(Vec<u32>),
    Uuids(Vec<String>),
    All,
}

impl Gpus {
    pub fn toml(&self) -> String {
        match self {
            Gpus::Indexes(v) => format!(
                "[{}]",
                v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            ),
            Gpus::Uuids(v) => array(v.iter().map(|u| string(u))),
            Gpus::All => "\"all\"".into(),
        }
    }

    /// The one GPU index, when there is exactly one.
    pub fn single_index(&self) -> Option<u32> {
        match self {
            Gpus::Indexes(v) if v.len() == 1 => Some(v[0]),
            _ => None,
        }
    }
}

/// One `key = value` line, with the comment written above it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    /// TOML text of the value.
    pub value: String,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub name: String,
    /// Written as a live section; `false`: commented out, `todo` saying why.
    pub active: bool,
    pub todo: Vec<String>,
    pub entries: Vec<Entry>,
    /// The environment, as it is (written as TOML strings by `emit`).
    pub env: BTreeMap<String, String>,
    /// Comments written in the environment's table: variables left out, and why.
    pub env_notes: Vec<String>,
    pub depends_on: Vec<(String, Condition)>,
    pub gpus: Option<Gpus>,
    /// How many lines of the compose file it came from.
    pub compose_lines: usize,
}

impl Draft {
    pub fn new(name: &str) -> Draft {
        Draft {
            name: name.to_string(),
            active: true,
            todo: Vec::new(),
            entries: Vec::new(),
            env: BTreeMap::new(),
            env_notes: Vec::new(),
            depends_on: Vec::new(),
            gpus: None,
            compose_lines: 0,
        }
    }

    pub fn set(&mut self, key: &str, value: String, note: impl Into<Option<String>>) {
        self.entries.retain(|e| e.key != key);
        self.entries.push(Entry {
            key: key.to_string(),
            value,
            note: note.into(),
        });
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

/// The text of a TOML string value (`"a b"` -> `a b`), or the words of an array of
/// strings joined as a shell would read them back.
pub fn as_line(value: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum V {
        Line(String),
        Argv(Vec<String>),
    }
    let table: BTreeMap<String, V> = toml::from_str(&format!("v = {value}")).ok()?;
    Some(match table.into_values().next()? {
        V::Line(l) => l,
        V::Argv(argv) => argv
            .iter()
            .map(|a| shlex::try_quote(a).map_or_else(|_| a.clone(), |q| q.into_owned()))
            .collect::<Vec<_>>()
            .join(" "),
    })
}

/// A TOML basic string.
pub fn string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML array of already-written values.
pub fn array(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(", "))
}

/// A TOML inline table of already-written values.
pub fn inline(items: &[(String, String)]) -> String {
    let body: Vec<String> = items
        .iter()
        .map(|(k, v)| format!("{} = {v}", key(k)))
        .collect();
    format!("{{ {} }}", body.join(", "))
}

/// A key, quoted when it is not a bare TOML key.
pub fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        string(k)
    }
}
