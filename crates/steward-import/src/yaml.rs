//! A compose file's YAML as a plain tree with positions: anchors and aliases resolved (by
//! saphyr), merge keys (`<<: *x`, also written `!!merge <<`) applied by hand, scalars
//! typed by the YAML 1.2 core schema as compose reads them.

use saphyr::{MarkedYaml, YamlData};
use saphyr_parser::ScalarStyle;

/// One node, with where it starts (1-based line and column).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub line: usize,
    pub col: usize,
    /// The last line it covers.
    pub end_line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// In the file's order; a later duplicate key replaces an earlier one.
    Map(Vec<(String, Node)>),
}

/// Why a text is not YAML: the message and where (1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl Node {
    pub fn new(kind: Kind) -> Node {
        Node {
            kind,
            line: 0,
            col: 0,
            end_line: 0,
        }
    }

    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn entries(&self) -> &[(String, Node)] {
        match &self.kind {
            Kind::Map(entries) => entries,
            _ => &[],
        }
    }

    /// A scalar as text (numbers and booleans as compose would write them back).
    pub fn scalar(&self) -> Option<String> {
        match &self.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Int(i) => Some(i.to_string()),
            Kind::Float(f) => Some(f.to_string()),
            Kind::Bool(b) => Some(b.to_string()),
            Kind::Null | Kind::Seq(_) | Kind::Map(_) => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Null)
    }

    /// What kind of value this is, for a message.
    pub fn describe(&self) -> &'static str {
        match self.kind {
            Kind::Null => "nothing (null)",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) | Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

/// Parses the first document of `text`; an empty file is `Null`.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let mut loader = saphyr::YamlLoader::<MarkedYaml>::default();
    // Scalars stay as written, so that a tagged merge key (`!!merge <<`) is still a key.
    loader.early_parse(false);
    let mut parser = saphyr_parser::Parser::new_from_str(text);
    parser.load(&mut loader, true).map_err(|e| YamlError {
        line: e.marker().line(),
        col: e.marker().col() + 1,
        message: e.info().to_string(),
    })?;
    let docs = loader.into_documents();
    match docs.into_iter().next() {
        Some(doc) => convert(&doc),
        None => Ok(Node::new(Kind::Null)),
    }
}

fn convert(node: &MarkedYaml) -> Result<Node, YamlError> {
    let at = |kind| Node {
        kind,
        line: node.span.start.line(),
        col: node.span.start.col() + 1,
        end_line: node.span.end.line().max(node.span.start.line()),
    };
    let kind = match &node.data {
        YamlData::Representation(text, style, tag) => {
            let tag = tag.as_ref().map(|t| t.suffix.as_str());
            scalar(text, *style, tag)
        }
        YamlData::Value(v) => Kind::Str(format!("{v:?}")),
        YamlData::Sequence(items) => {
            Kind::Seq(items.iter().map(convert).collect::<Result<_, _>>()?)
        }
        YamlData::Mapping(map) => {
            let mut entries: Vec<(String, Node)> = Vec::new();
            for (k, v) in map {
                let key = convert(k)?;
                let Some(name) = key.scalar().or_else(|| key.is_null().then(String::new)) else {
                    return Err(YamlError {
                        line: key.line,
                        col: key.col,
                        message: format!("a key must be a plain value, not {}", key.describe()),
                    });
                };
                entries.push((name, convert(v)?));
            }
            Kind::Map(apply_merges(entries, node)?)
        }
        YamlData::Tagged(_, inner) => return convert(inner),
        YamlData::Alias(_) | YamlData::BadValue => {
            return Err(YamlError {
                line: node.span.start.line(),
                col: node.span.start.col() + 1,
                message: "a value that cannot be read (an unknown alias?)".into(),
            })
        }
    };
    Ok(at(kind))
}

/// A scalar by the YAML 1.2 core schema: quoted or `!!str` is a string; plain text is null,
/// a boolean, a number or a string.
fn scalar(text: &str, style: ScalarStyle, tag: Option<&str>) -> Kind {
    if style != ScalarStyle::Plain || tag == Some("str") {
        return Kind::Str(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Kind::Int(i);
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Kind::Int(i);
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return Kind::Int(i);
        }
    }
    let numeric = text
        .trim_start_matches(['-', '+'])
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '.');
    if numeric {
        if let Ok(f) = text.parse::<f64>() {
            return Kind::Float(f);
        }
    }
    Kind::Str(text.to_string())
}

/// Applies `<<` keys: the merged mappings' entries come first and the mapping's own keys
/// win; of several merged mappings (`<<: [*a, *b]`), the first wins. Inner mappings were
/// converted, so merged already, before this one: chains of merges work.
fn apply_merges(
    entries: Vec<(String, Node)>,
    at: &MarkedYaml,
) -> Result<Vec<(String, Node)>, YamlError> {
    if !entries.iter().any(|(k, _)| k == "<<") {
        return Ok(entries);
    }
    let mut merged: Vec<(String, Node)> = Vec::new();
    let mut own: Vec<(String, Node)> = Vec::new();
    for (k, v) in entries {
        if k != "<<" {
            own.push((k, v));
            continue;
        }
        let sources = match v.kind {
            Kind::Map(_) => vec![v],
            Kind::Seq(items) => items,
            _ => {
                return Err(YamlError {
                    line: v.line.max(at.span.start.line()),
                    col: v.col,
                    message: format!(
                        "`<<` merges a mapping or a list of mappings, not {}",
                        v.describe()
                    ),
                })
            }
        };
        for source in sources {
            let Kind::Map(items) = source.kind else {
                return Err(YamlError {
                    line: source.line,
                    col: source.col,
                    message: format!("`<<` merges mappings, not {}", source.describe()),
                });
            };
            for (k, v) in items {
                if !merged.iter().any(|(m, _)| *m == k) {
                    merged.push((k, v));
                }
            }
        }
    }
    merged.retain(|(k, _)| !own.iter().any(|(o, _)| o == k));
    merged.extend(own);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_follow_the_core_schema_and_quotes_make_strings() {
        let n = parse("a: 1\nb: '1'\nc: true\nd: ~\ne: 1.5\nf: 12G\ng: \"yes\"\nh: yes\n").unwrap();
        assert_eq!(n.get("a").unwrap().kind, Kind::Int(1));
        assert_eq!(n.get("b").unwrap().kind, Kind::Str("1".into()));
        assert_eq!(n.get("c").unwrap().kind, Kind::Bool(true));
        assert!(n.get("d").unwrap().is_null());
        assert_eq!(n.get("e").unwrap().kind, Kind::Float(1.5));
        assert_eq!(n.get("f").unwrap().kind, Kind::Str("12G".into()));
        assert_eq!(n.get("h").unwrap().kind, Kind::Str("yes".into()));
    }

    #[test]
    fn merge_keys_tagged_or_not_chain_and_local_keys_win() {
        let text = "x-base: &base\n  restart: always\n  env: 1\nx-mid: &mid\n  !!merge <<: *base\n  env: 2\ns:\n  <<: [*mid, *base]\n  restart: 'no'\n";
        let n = parse(text).unwrap();
        let s = n.get("s").unwrap();
        assert_eq!(s.get("restart").unwrap().kind, Kind::Str("no".into()));
        assert_eq!(
            s.get("env").unwrap().kind,
            Kind::Int(2),
            "the first merged wins"
        );
        assert!(s.get("<<").is_none());
    }

    #[test]
    fn not_yaml_says_where() {
        let e = parse("a: [1, 2\nb: c\n").unwrap_err();
        assert!(e.line >= 1 && e.col >= 1, "{e:?}");
        let e = parse("a: *nowhere\n").unwrap_err();
        assert!(e.message.contains("anchor"), "{e:?}");
    }

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let n = parse("services:\n  web:\n    image: x\n").unwrap();
        let web = n.get("services").unwrap().get("web").unwrap();
        assert_eq!((web.line, web.col), (3, 5));
    }
}
