//! `{input}`, `{stem}`, `{name}`, `{output_dir}`, `{job_id}`, `{attempt}` in argv elements
//! and output patterns. Substitution is per element and never goes near a shell, so a file
//! named `$(rm -rf ~).pdf` is just a name. Values are OS strings: a name that is not UTF-8
//! reaches the program byte for byte.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::Path;

/// The variables of one job's input.
pub type Vars = BTreeMap<&'static str, OsString>;

/// The variables of one job's input.
pub fn vars_for(input: &Path, output_dir: &Path, job_id: i64, attempt: u32) -> Vars {
    let name = input
        .file_name()
        .map(OsStr::to_os_string)
        .unwrap_or_default();
    let stem = input
        .file_stem()
        .map(OsStr::to_os_string)
        .unwrap_or_default();
    BTreeMap::from([
        ("input", input.as_os_str().to_os_string()),
        ("name", name),
        ("stem", stem),
        ("output_dir", output_dir.as_os_str().to_os_string()),
        ("job_id", job_id.to_string().into()),
        ("attempt", attempt.to_string().into()),
    ])
}

/// Replaces `{var}` with its value; `{{` and `}}` are literal braces.
pub fn render(template: &str, vars: &Vars) -> Result<OsString, String> {
    let mut out = OsString::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err(format!(
                "unmatched '}}' in {template:?}; write '}}}}' for a literal brace"
            ));
        }
        let end = tail
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in {template:?}"))?;
        let name = &tail[1..end];
        let value = vars.get(name).ok_or_else(|| {
            format!(
                "unknown variable {{{name}}} in {template:?}; use {}",
                vars.keys()
                    .map(|k| format!("{{{k}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        out.push(value);
        rest = &tail[end + 1..];
    }
    out.push(rest);
    Ok(out)
}

/// Checks a template against the known variable names without rendering it.
pub fn check(template: &str) -> Result<(), String> {
    render(
        template,
        &vars_for(Path::new("/x/y.z"), Path::new("/o"), 1, 1),
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_per_element_without_any_shell_meaning() {
        let vars = vars_for(
            Path::new("/in/it's $(rm -rf ~) \"a\".pdf"),
            Path::new("/out"),
            7,
            2,
        );
        assert_eq!(
            render("{output_dir}/{stem}.txt", &vars).unwrap(),
            "/out/it's $(rm -rf ~) \"a\".txt"
        );
        assert_eq!(
            render("{name}", &vars).unwrap(),
            "it's $(rm -rf ~) \"a\".pdf"
        );
        assert_eq!(
            render("job-{job_id}-try-{attempt} {{x}}", &vars).unwrap(),
            "job-7-try-2 {x}"
        );
        // A name that is not UTF-8 comes through byte for byte.
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        let odd = vars_for(
            Path::new(OsStr::from_bytes(b"/in/\xff\xfe-x.txt")),
            Path::new("/o"),
            1,
            1,
        );
        assert_eq!(
            render("{name}", &odd).unwrap().into_vec(),
            b"\xff\xfe-x.txt"
        );
        assert!(render("{nope}", &vars)
            .unwrap_err()
            .contains("unknown variable {nope}"));
        assert!(render("{input", &vars).is_err());
    }
}
