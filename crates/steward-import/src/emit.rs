//! Writes the drafts as an annotated steward.toml: each key with the compose key it came
//! from above it, services that need a person commented out with a TODO.

use crate::draft::{key, string, Draft};
use std::fmt::Write;

pub fn toml(drafts: &[Draft], sources: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported from {} by `steward import`.",
        sources.join(", ")
    );
    out.push_str("# Each comment says which compose key a setting came from. The import's report lists what\n");
    out.push_str(
        "# was left out and why; `steward plan` shows whether the limits fit this host.\n",
    );
    for d in drafts {
        out.push('\n');
        let section = section(d);
        if d.active {
            out.push_str(&section);
        } else {
            for line in &d.todo {
                let _ = writeln!(out, "# {line}");
            }
            for line in section.lines() {
                if line.is_empty() {
                    out.push('\n');
                } else if line.starts_with('#') {
                    let _ = writeln!(out, "#{line}");
                } else {
                    let _ = writeln!(out, "# {line}");
                }
            }
        }
    }
    out
}

/// One service's section (with its env table), as it is written when active.
pub fn section(d: &Draft) -> String {
    let mut out = String::new();
    write_service(&mut out, d);
    out
}

fn write_service(out: &mut String, d: &Draft) {
    let _ = writeln!(out, "[services.{}]", key(&d.name));
    if !d.active && d.get("command").is_none() {
        out.push_str("command = [\"TODO\"]\n");
    }
    for e in &d.entries {
        if let Some(note) = &e.note {
            let _ = writeln!(out, "# {note}");
        }
        let _ = writeln!(out, "{} = {}", key(&e.key), e.value);
    }
    if let Some(g) = &d.gpus {
        let _ = writeln!(out, "gpus = {}", g.toml());
    }
    if !d.depends_on.is_empty() {
        let deps: Vec<String> = d
            .depends_on
            .iter()
            .map(|(n, c)| format!("{} = \"{}\"", key(n), c.as_str()))
            .collect();
        let _ = writeln!(out, "depends_on = {{ {} }}", deps.join(", "));
    }
    if !d.env.is_empty() || !d.env_notes.is_empty() {
        let _ = writeln!(out, "\n[services.{}.env]", key(&d.name));
        for n in &d.env_notes {
            let _ = writeln!(out, "# {n}");
        }
        for (k, v) in &d.env {
            let _ = writeln!(out, "{} = {}", key(k), string(v));
        }
    }
}
