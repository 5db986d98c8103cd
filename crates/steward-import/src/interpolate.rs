//! Compose's variable interpolation, applied to every string of a file before it is read:
//! `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset),
//! `${VAR:?message}` / `${VAR?message}` (an error), `${VAR:+alt}` / `${VAR+alt}`, defaults
//! that hold interpolations themselves, and `$$` for a literal `$`. Variables come from the
//! environment, then the project's `.env` file.

/// Interpolates `text`; `lookup` gives a variable's value. An error says which variable is
/// required and why.
pub fn interpolate(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(inner) = rest.strip_prefix('{') {
            let end = closing_brace(inner).ok_or_else(|| {
                format!(
                    "`${{{}` has no closing `}}`",
                    inner.chars().take(30).collect::<String>()
                )
            })?;
            out.push_str(&braced(&inner[..end], lookup)?);
            rest = &inner[end + 1..];
        } else {
            let name_len = rest
                .char_indices()
                .find(|&(i, c)| {
                    !(c == '_' || c.is_ascii_alphanumeric()) || (i == 0 && c.is_ascii_digit())
                })
                .map_or(rest.len(), |(i, _)| i);
            if name_len == 0 {
                // A lone `$` is kept as it is.
                out.push('$');
            } else {
                out.push_str(&lookup(&rest[..name_len]).unwrap_or_default());
                rest = &rest[name_len..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` that closes a `${` whose body starts `inner`, nested braces counted.
fn closing_brace(inner: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The value of one `${…}`.
fn braced(body: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let name_len = body
        .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
        .unwrap_or(body.len());
    let (name, op) = body.split_at(name_len);
    if name.is_empty() {
        return Err(format!("`${{{body}}}` names no variable"));
    }
    let value = lookup(name);
    let set = value.is_some();
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let (kind, arg) = if let Some(a) = op.strip_prefix(":-") {
        (":-", a)
    } else if let Some(a) = op.strip_prefix(":?") {
        (":?", a)
    } else if let Some(a) = op.strip_prefix(":+") {
        (":+", a)
    } else if let Some(a) = op.strip_prefix('-') {
        ("-", a)
    } else if let Some(a) = op.strip_prefix('?') {
        ("?", a)
    } else if let Some(a) = op.strip_prefix('+') {
        ("+", a)
    } else if op.is_empty() {
        ("", "")
    } else {
        return Err(format!(
            "`${{{body}}}` is not an interpolation compose knows"
        ));
    };
    let arg = || interpolate(arg, lookup);
    Ok(match kind {
        ":-" if !non_empty => arg()?,
        "-" if !set => arg()?,
        ":?" if !non_empty => return Err(required(name, &arg()?, "set and not empty")),
        "?" if !set => return Err(required(name, &arg()?, "set")),
        ":+" => {
            if non_empty {
                arg()?
            } else {
                String::new()
            }
        }
        "+" => {
            if set {
                arg()?
            } else {
                String::new()
            }
        }
        _ => value.unwrap_or_default(),
    })
}

fn required(name: &str, message: &str, what: &str) -> String {
    if message.is_empty() {
        format!("the variable {name} must be {what} (set it in the environment or in .env)")
    } else {
        format!("the variable {name} must be {what}: {message}")
    }
}

/// The variables of a `.env` file: `KEY=value` lines, `export` allowed, `#` comments,
/// values in single quotes kept as written, in double quotes with `\n` and `\"`
/// unescaped, unquoted ones cut at ` #`.
pub fn parse_dotenv(text: &str) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c == '_' || c.is_ascii_alphanumeric() || c == '.')
        {
            continue;
        }
        let value = value.trim();
        let value = if let Some(v) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            v.to_string()
        } else if let Some(v) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            v.replace("\\n", "\n")
                .replace("\\\"", "\"")
                .replace("\\\\", "\\")
        } else {
            value
                .split(" #")
                .next()
                .unwrap_or("")
                .trim_end()
                .to_string()
        };
        vars.push((key.to_string(), value));
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("yes".into()),
            "EMPTY" => Some(String::new()),
            "GPU" => Some("1".into()),
            _ => None,
        }
    }

    fn run(text: &str) -> Result<String, String> {
        interpolate(text, &env)
    }

    #[test]
    fn the_forms_compose_knows() {
        assert_eq!(run("a $SET b ${SET}c").unwrap(), "a yes b yesc");
        assert_eq!(
            run("${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d}").unwrap(),
            "d d  d"
        );
        assert_eq!(
            run("${SET:+alt} ${EMPTY:+alt} ${EMPTY+alt} ${UNSET+alt}").unwrap(),
            "alt  alt "
        );
        assert_eq!(
            run("${UNSET:-${GPU:-0}}").unwrap(),
            "1",
            "a default that interpolates"
        );
        assert_eq!(run("$$HOSTNAME and $$").unwrap(), "$HOSTNAME and $");
        assert_eq!(run("cost: 5$ ${UNSET}").unwrap(), "cost: 5$ ");
        assert!(run("${UNSET:?give it}")
            .unwrap_err()
            .contains("UNSET must be set and not empty: give it"));
        assert!(run("${EMPTY?}").is_ok());
        assert!(run("${SET").unwrap_err().contains("closing"));
        assert!(run("${SET!x}").is_err());
    }

    #[test]
    fn dotenv_lines() {
        let vars = parse_dotenv(
            "# c\nA=1\nexport B = two words # note\nC='$x y'\nD=\"q\\\"q\"\nnot a var\n",
        );
        assert_eq!(
            vars,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "$x y".into()),
                ("D".into(), "q\"q".into()),
            ]
        );
    }
}
