//! Reading compose files as compose does: each parsed (anchors and merge keys resolved),
//! its strings interpolated from the environment and the project's `.env`, then merged in
//! order (a later file overrides an earlier one), and the result checked to be a compose
//! file. Every node keeps the file and the place it came from, for errors and the report.

use crate::error::ImportError;
use crate::interpolate::{interpolate, parse_dotenv};
use crate::yaml::{self, Kind, Node};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The top-level keys of the compose specification (`x-` keys are extensions).
const TOP_LEVEL: &[&str] = &[
    "version", "name", "services", "networks", "volumes", "secrets", "configs", "include", "models",
];

/// Keys whose lists an override file extends instead of replacing (compose's merge rules).
const APPENDED: &[&str] = &[
    "ports",
    "expose",
    "external_links",
    "dns",
    "dns_search",
    "tmpfs",
    "volumes",
    "devices",
    "cap_add",
    "cap_drop",
    "security_opt",
    "env_file",
    "extra_hosts",
    "group_add",
    "profiles",
];

/// The files compose reads when none is named, in its order of preference, and the
/// override file it adds.
pub const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];
const OVERRIDES: &[&str] = &[
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yaml",
    "docker-compose.override.yml",
];

/// The merged compose model, with where each service came from.
pub struct Compose {
    pub root: Node,
    /// The file each service was (last) defined in.
    pub origin: BTreeMap<String, PathBuf>,
    /// The project's folder: relative paths in the files are relative to it.
    pub dir: PathBuf,
    /// The variables available for interpolation (environment over `.env`).
    pub vars: BTreeMap<String, String>,
}

/// The files to read: those given, or compose's defaults in `dir` (with the override file).
pub fn files_to_read(given: &[PathBuf], dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    let Some(base) = DEFAULT_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
    else {
        return Err(ImportError::NoFile {
            tried: DEFAULT_FILES.join(", "),
        });
    };
    let mut files = vec![base];
    files.extend(OVERRIDES.iter().map(|f| dir.join(f)).find(|p| p.exists()));
    Ok(files)
}

/// Reads and merges `files`; `env` is the process environment.
pub fn load(files: &[PathBuf], env: &BTreeMap<String, String>) -> Result<Compose, ImportError> {
    let dir = files
        .first()
        .and_then(|f| f.parent())
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    // The environment wins over .env, as in compose.
    let mut vars: BTreeMap<String, String> = match std::fs::read_to_string(dir.join(".env")) {
        Ok(text) => parse_dotenv(&text).into_iter().collect(),
        Err(_) => BTreeMap::new(),
    };
    vars.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut merged: Option<Node> = None;
    let mut origin = BTreeMap::new();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
            path: path.clone(),
            source,
        })?;
        let mut root = yaml::parse(&text).map_err(|e| ImportError::NotYaml {
            path: path.clone(),
            line: e.line,
            col: e.col,
            message: e.message,
        })?;
        check_top_level(path, &root)?;
        let lookup = |name: &str| vars.get(name).cloned();
        interpolate_tree(&mut root, &mut Vec::new(), &lookup).map_err(
            |(at, line, col, message)| ImportError::At {
                path: path.clone(),
                line,
                col,
                yaml_path: at,
                message,
            },
        )?;
        for (name, _) in root.get("services").map(Node::entries).unwrap_or_default() {
            origin.insert(name.clone(), path.clone());
        }
        merged = Some(match merged {
            None => root,
            Some(base) => merge(base, root, ""),
        });
    }
    let root = merged.unwrap_or_else(|| Node::new(Kind::Null));
    Ok(Compose {
        root,
        origin,
        dir,
        vars,
    })
}

fn check_top_level(path: &Path, root: &Node) -> Result<(), ImportError> {
    let not_compose = |why: String| ImportError::NotCompose {
        path: path.to_path_buf(),
        why,
    };
    let Kind::Map(entries) = &root.kind else {
        return Err(not_compose(format!(
            "its top level is {}, where compose has a mapping with `services:`",
            root.describe()
        )));
    };
    for (key, value) in entries {
        if key.starts_with("x-") || TOP_LEVEL.contains(&key.as_str()) {
            continue;
        }
        let guess = TOP_LEVEL
            .iter()
            .map(|k| (strsim::jaro_winkler(key, k), *k))
            .filter(|(s, _)| *s > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, k)| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        return Err(ImportError::At {
            path: path.to_path_buf(),
            line: value.line.saturating_sub(usize::from(value.line > 0 && value.col == 1)),
            col: 1,
            yaml_path: key.clone(),
            message: format!(
                "`{key}` is not a top-level key of compose{guess}; it has {}, and `x-` keys for extensions",
                TOP_LEVEL.join(", ")
            ),
        });
    }
    match root.get("services") {
        Some(s) if matches!(s.kind, Kind::Map(_)) => Ok(()),
        Some(s) if s.is_null() => Ok(()),
        Some(s) => Err(ImportError::At {
            path: path.to_path_buf(),
            line: s.line,
            col: s.col,
            yaml_path: "services".into(),
            message: format!(
                "`services` must be a mapping of service names, not {}",
                s.describe()
            ),
        }),
        None if entries.iter().any(|(k, _)| k == "include") => Ok(()),
        None => Err(not_compose("it has no `services:`".into())),
    }
}

/// Interpolates every string value (not keys); an error carries the YAML path and place.
fn interpolate_tree(
    node: &mut Node,
    at: &mut Vec<String>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, usize, usize, String)> {
    let (line, col) = (node.line, node.col);
    match &mut node.kind {
        Kind::Str(s) => {
            *s = interpolate(s, lookup).map_err(|m| (at.join("."), line, col, m))?;
        }
        Kind::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                at.push(format!("[{i}]"));
                interpolate_tree(item, at, lookup)?;
                at.pop();
            }
        }
        Kind::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                // Extensions are read only through anchors, which were copied already.
                if at.is_empty() && k.starts_with("x-") {
                    continue;
                }
                at.push(k.clone());
                interpolate_tree(v, at, lookup)?;
                at.pop();
            }
        }
        Kind::Null | Kind::Bool(_) | Kind::Int(_) | Kind::Float(_) => {}
    }
    Ok(())
}

/// `over` merged onto `base` by compose's rules: mappings key by key, the lists of
/// [`APPENDED`] keys extended, `environment` and `labels` merged as mappings whatever their
/// form, everything else replaced.
pub fn merge(base: Node, over: Node, key: &str) -> Node {
    let Node {
        kind: over_kind,
        line,
        col,
        end_line,
    } = over;
    let placed = |kind| Node {
        kind,
        line,
        col,
        end_line,
    };
    match (base.kind, over_kind) {
        (Kind::Map(mut b), Kind::Map(o)) => {
            for (k, v) in o {
                match b.iter().position(|(bk, _)| *bk == k) {
                    Some(i) => {
                        let old = std::mem::replace(&mut b[i].1, Node::new(Kind::Null));
                        b[i].1 = merge(old, v, &k);
                    }
                    None => b.push((k, v)),
                }
            }
            placed(Kind::Map(b))
        }
        (Kind::Seq(mut b), Kind::Seq(o)) if APPENDED.contains(&key) => {
            for item in o {
                if !b.contains(&item) {
                    b.push(item);
                }
            }
            placed(Kind::Seq(b))
        }
        (b @ (Kind::Seq(_) | Kind::Map(_)), o @ (Kind::Seq(_) | Kind::Map(_)))
            if matches!(key, "environment" | "labels" | "depends_on") =>
        {
            merge(as_mapping(Node::new(b)), as_mapping(placed(o)), "")
        }
        (_, kind) => placed(kind),
    }
}

/// A list form (`["A=1", "B"]`, or service names for `depends_on`) as a mapping.
pub fn as_mapping(node: Node) -> Node {
    let Kind::Seq(items) = node.kind else {
        return node;
    };
    let entries = items
        .into_iter()
        .filter_map(|item| {
            let text = item.scalar()?;
            let (key, kind) = match text.split_once('=') {
                Some((k, v)) => (k.to_string(), Kind::Str(v.to_string())),
                None => (text, Kind::Null),
            };
            Some((key, Node { kind, ..item }))
        })
        .collect();
    Node {
        kind: Kind::Map(entries),
        ..node
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(text: &str) -> Node {
        yaml::parse(text).unwrap()
    }

    fn items(n: &Node) -> Vec<String> {
        match &n.kind {
            Kind::Seq(v) => v.iter().filter_map(Node::scalar).collect(),
            _ => vec![],
        }
    }

    #[test]
    fn an_override_merges_maps_extends_port_lists_and_replaces_commands() {
        let base = node("services:\n  web:\n    command: [a]\n    ports: ['80:80']\n    environment: [A=1, B=2]\n");
        let over = node("services:\n  web:\n    command: [b]\n    ports: ['443:443']\n    environment:\n      B: three\n");
        let m = merge(base, over, "");
        let web = m.get("services").unwrap().get("web").unwrap();
        assert_eq!(items(web.get("command").unwrap()), ["b"]);
        assert_eq!(items(web.get("ports").unwrap()), ["80:80", "443:443"]);
        let env = web.get("environment").unwrap();
        assert_eq!(env.get("A").unwrap().scalar().as_deref(), Some("1"));
        assert_eq!(env.get("B").unwrap().scalar().as_deref(), Some("three"));
    }
}
