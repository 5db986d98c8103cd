//! Memory, pids and ulimits: compose's units made explicit, and what steward does itself.

use crate::draft::{string, Draft};
use crate::report::{Report, What};
use crate::units::size;
use crate::yaml::{Kind, Node};

pub fn memory(
    d: &mut Draft,
    name: &str,
    steward_key: &str,
    key: &str,
    value: &Node,
    report: &mut Report,
) {
    let text = value.scalar().unwrap_or_default();
    if text == "-1" && steward_key == "memory_swap" {
        report.add(Some(name), key, What::CannotMap, "unlimited swap: steward's default is no swap (a GPU worker that swaps is slower than one that restarts); give memory_swap a size to allow some");
        return;
    }
    match size(&text) {
        Ok((s, bytes)) => {
            let unit_note = if text.chars().last().is_some_and(|c| c.is_ascii_alphabetic())
                && !text.to_ascii_lowercase().ends_with("ib")
            {
                format!("; compose reads {text} in powers of 2 ({bytes} bytes), where Kubernetes would read {text} as powers of 10 (7% less at G)")
            } else {
                String::new()
            };
            d.set(
                steward_key,
                string(&s),
                Some(format!("compose: {key}: {text}")),
            );
            report.add(
                Some(name),
                key,
                What::Changed,
                format!("{steward_key} = \"{s}\"{unit_note}"),
            );
        }
        Err(e) => report.add(Some(name), key, What::CannotMap, e),
    }
}

pub fn pids(d: &mut Draft, name: &str, key: &str, value: &Node, report: &mut Report) {
    match value.kind {
        Kind::Int(n) if n > 0 && n <= i64::from(u32::MAX) => {
            d.set("pids_max", n.to_string(), Some(format!("compose: {key}")));
            report.add(Some(name), key, What::Mapped, format!("pids_max = {n}"));
        }
        Kind::Int(n) if n <= 0 => report.add(
            Some(name),
            key,
            What::Dropped,
            "no limit (steward's default)",
        ),
        _ => report.add(Some(name), key, What::CannotMap, "not a number"),
    }
}

pub fn ulimits(d: &mut Draft, name: &str, value: &Node, report: &mut Report) {
    for (limit, v) in value.entries() {
        let n = match (&v.kind, v.get("soft"), v.get("hard")) {
            (Kind::Int(n), _, _) => Some(*n),
            (_, Some(s), _) => match s.kind {
                Kind::Int(n) => Some(n),
                _ => None,
            },
            _ => None,
        };
        let key = format!("ulimits.{limit}");
        if limit == "core" {
            let on = n != Some(0);
            d.set(
                "core_dumps",
                on.to_string(),
                Some(format!(
                    "compose: ulimits.core: {}",
                    n.map_or("?".into(), |n| n.to_string())
                )),
            );
            report.add(
                Some(name),
                &key,
                What::Mapped,
                if on {
                    "core_dumps = true".into()
                } else {
                    "core_dumps = false (steward's default: no core dumps fill the disk)"
                        .to_string()
                },
            );
        } else {
            report.add(Some(name), &key, What::CannotMap, "steward does not set this limit per service; set it for steward itself (systemd: LimitNOFILE= and the like) and its services inherit it".to_string());
        }
    }
}
