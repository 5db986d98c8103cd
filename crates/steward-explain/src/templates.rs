//! Collapsing repeated lines into templates, Drain-style: lines are masked (numbers, hex,
//! paths), bucketed by token count, and merged with a template when most tokens agree, so
//! 60 `GGML_ASSERT` lines read as one line x60.

use regex::Regex;
use serde::Serialize;
use std::sync::OnceLock;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Template {
    pub template: String,
    pub count: usize,
    pub first_line: usize,
    pub example: String,
}

/// How many tokens must agree for a line to join a template.
const SIMILARITY: f64 = 0.6;
/// Templates kept at most: memory stays bounded on any input.
const MAX_TEMPLATES: usize = 500;

#[derive(Default)]
pub struct Templates {
    items: Vec<(Vec<String>, Template)>,
}

fn mask(line: &str) -> Vec<String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"0x[0-9a-fA-F]+|\d+(\.\d+)?|/[\w./-]+").expect("valid"));
    line.split_whitespace()
        .take(64)
        .map(|t| {
            if re.is_match(t) {
                "<*>".to_string()
            } else {
                t.to_string()
            }
        })
        .collect()
}

impl Templates {
    pub fn add(&mut self, line_no: usize, line: &str) {
        let tokens = mask(line);
        for (toks, t) in self.items.iter_mut() {
            if toks.len() != tokens.len() {
                continue;
            }
            let same = toks.iter().zip(&tokens).filter(|(a, b)| a == b).count();
            if tokens.is_empty() || same as f64 / tokens.len() as f64 >= SIMILARITY {
                for (a, b) in toks.iter_mut().zip(&tokens) {
                    if a != b {
                        *a = "<*>".into();
                    }
                }
                t.template = toks.join(" ");
                t.count += 1;
                return;
            }
        }
        if self.items.len() < MAX_TEMPLATES {
            let example: String = line.chars().take(300).collect();
            self.items.push((
                tokens.clone(),
                Template {
                    template: tokens.join(" "),
                    count: 1,
                    first_line: line_no,
                    example,
                },
            ));
        }
    }

    pub fn into_sorted(self) -> Vec<Template> {
        let mut v: Vec<Template> = self.items.into_iter().map(|(_, t)| t).collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then(a.first_line.cmp(&b.first_line)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixty_asserts_are_one_template() {
        let mut t = Templates::default();
        for i in 0..60 {
            t.add(
                i,
                &format!(
                    "GGML_ASSERT: /src/ggml.c:{}: ctx->mem_buffer != NULL (slot {i})",
                    4000 + i
                ),
            );
        }
        t.add(61, "something else failed entirely here");
        let v = t.into_sorted();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].count, 60);
        assert!(
            v[0].template.starts_with("GGML_ASSERT:"),
            "{}",
            v[0].template
        );
    }
}
