//! Reading the file: TOML into the raw types, with errors that point at the line and
//! column, and a did-you-mean for a mistyped key.

use crate::config::RawConfig;
use crate::{ConfigError, Location};
use std::path::Path;

pub fn parse(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| syntax_error(&e, text, path))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let offset = inner.span().map_or(0, |s| s.start);
        ConfigError::Invalid {
            location: Location::from_offset(path.to_path_buf(), text, offset),
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            message: with_did_you_mean(inner.message()),
        }
    })
}

fn syntax_error(e: &toml::de::Error, text: &str, path: &Path) -> ConfigError {
    let offset = e.span().map_or(0, |s| s.start);
    ConfigError::Syntax {
        location: Location::from_offset(path.to_path_buf(), text, offset),
        message: format!("TOML syntax: {}", e.message().trim()),
    }
}

/// serde says "unknown field `memroy`, expected one of `command`, ..."; a person wants to
/// hear "did you mean `memory`?".
fn with_did_you_mean(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|cand| (strsim::jaro_winkler(unknown, cand), cand))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, cand)) => format!("{message}; did you mean `{cand}`?"),
        None => message.to_string(),
    }
}
