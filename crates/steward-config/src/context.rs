//! What every domain's `resolve` shares: the file's text and path, so that an error about
//! a key points at its line and column even when the problem is a relation between keys.

use crate::{ConfigError, Location};
use std::path::{Path, PathBuf};

pub(crate) struct Ctx<'a> {
    pub text: &'a str,
    pub path: &'a Path,
}

impl Ctx<'_> {
    /// An error about `key` (its dotted path, as parts), located at the deepest part of it
    /// the file holds.
    pub(crate) fn err(&self, key: &[&str], message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            location: Location::from_offset(
                self.path.to_path_buf(),
                self.text,
                locate(self.text, key),
            ),
            key: key.join("."),
            message: message.into(),
        }
    }
}

pub(crate) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Byte offset of the deepest part of `key` that exists in the file, so that an error about
/// a relation between keys still points at the right line.
fn locate(text: &str, key: &[&str]) -> usize {
    let Ok(root) = toml::de::DeTable::parse(text) else {
        return 0;
    };
    let mut offset = 0;
    let mut table = Some(root.get_ref());
    for part in key {
        let Some(t) = table else { break };
        let Some((k, v)) = t.get_key_value(*part) else {
            break;
        };
        offset = k.span().start;
        table = match v.get_ref() {
            toml::de::DeValue::Table(inner) => Some(inner),
            _ => None,
        };
    }
    offset
}
