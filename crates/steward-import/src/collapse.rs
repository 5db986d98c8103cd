//! Worker chains: services written once per GPU and per worker (`worker-gpu0-w0` …
//! `worker-gpu1-w4`), the same but for those two numbers, chained with `depends_on` so that
//! they start one after another. steward does that itself: one service with `gpus` and
//! `replicas_per_gpu` starts the replicas on each GPU one after another, each once the one
//! before it is healthy, and GPUs in parallel.
//!
//! A group collapses when its names differ only in a GPU index (the service's one GPU) and
//! a worker index, and its keys differ only in those numbers (a command that holds them
//! gets `$STEWARD_GPU` and the worker's index on its GPU in their place, through sh).

use crate::draft::{string, Condition, Draft, Entry, Gpus};
use crate::report::{Report, What};
use std::collections::BTreeMap;

/// A name or value cut into runs of digits and the text between them.
fn tokens(s: &str) -> Vec<(bool, String)> {
    let mut out: Vec<(bool, String)> = Vec::new();
    for c in s.chars() {
        let digit = c.is_ascii_digit();
        match out.last_mut() {
            Some((d, t)) if *d == digit => t.push(c),
            _ => out.push((digit, c.to_string())),
        }
    }
    out
}

fn shape(name: &str) -> String {
    tokens(name)
        .into_iter()
        .map(|(d, t)| if d { "#".to_string() } else { t })
        .collect()
}

/// One member of a group: its draft's index, its GPU and its worker index.
struct Member {
    at: usize,
    gpu: u32,
    worker: u64,
}

pub fn collapse(drafts: Vec<Draft>, report: &mut Report) -> Vec<Draft> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, d) in drafts.iter().enumerate() {
        if d.active
            && d.gpus.as_ref().and_then(Gpus::single_index).is_some()
            && d.name.chars().any(|c| c.is_ascii_digit())
        {
            groups.entry(shape(&d.name)).or_default().push(i);
        }
    }
    // A worker's name -> the service that replaces it.
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    let mut gone: Vec<usize> = Vec::new();
    let mut added: Vec<(usize, Draft)> = Vec::new();
    for idx in groups.into_values().filter(|g| g.len() >= 2) {
        let Some(members) = members(&drafts, &idx) else {
            continue;
        };
        match merge_group(&drafts, &members, report) {
            Ok(new) => {
                let names: Vec<&str> = members.iter().map(|m| drafts[m.at].name.as_str()).collect();
                let before: usize = members.iter().map(|m| drafts[m.at].compose_lines).sum();
                let after: usize = new
                    .iter()
                    .map(|d| crate::emit::section(d).lines().count())
                    .sum();
                let became: Vec<String> = new
                    .iter()
                    .map(|d| {
                        let per = d
                            .get("replicas_per_gpu")
                            .map_or("1".into(), |e| e.value.clone());
                        format!(
                            "{} (gpus = {}, replicas_per_gpu = {per})",
                            d.name,
                            d.gpus.as_ref().map_or("-".into(), Gpus::toml)
                        )
                    })
                    .collect();
                report.add(
                    None,
                    "services",
                    What::Collapsed,
                    format!(
                        "{} … {} ({} services, {before} compose lines) became {} ({after} lines): steward starts the replicas on each GPU one after another, each once the one before it is healthy, so their depends_on chain is gone",
                        names[0], names[names.len() - 1], names.len(), became.join(" and ")
                    ),
                );
                for m in &members {
                    let on_its_gpu = |d: &&Draft| matches!(&d.gpus, Some(Gpus::Indexes(g)) if g.contains(&m.gpu));
                    let target = new.iter().find(on_its_gpu).unwrap_or(&new[0]);
                    renamed.insert(drafts[m.at].name.clone(), target.name.clone());
                }
                gone.extend(members.iter().map(|m| m.at));
                let first = members.iter().map(|m| m.at).min().unwrap_or(0);
                added.extend(new.into_iter().map(|d| (first, d)));
            }
            Err(why) => report.add(
                None,
                "services",
                What::Changed,
                format!(
                    "{} … and {} more look like a worker chain but stay as they are: {why}",
                    drafts[idx[0]].name,
                    idx.len() - 1
                ),
            ),
        }
    }
    let mut out = Vec::new();
    for (i, d) in drafts.into_iter().enumerate() {
        out.extend(
            added
                .iter()
                .filter(|(at, _)| *at == i)
                .map(|(_, new)| new.clone()),
        );
        if !gone.contains(&i) {
            out.push(d);
        }
    }
    // Dependencies on a collapsed worker now point at its service (never at itself).
    for d in &mut out {
        let mut deps: Vec<(String, Condition)> = Vec::new();
        for (dep, cond) in std::mem::take(&mut d.depends_on) {
            let dep = renamed.get(&dep).cloned().unwrap_or(dep);
            if dep == d.name {
                continue;
            }
            match deps.iter_mut().find(|(n, _)| *n == dep) {
                Some((_, c)) => *c = (*c).max(cond),
                None => deps.push((dep, cond)),
            }
        }
        d.depends_on = deps;
    }
    out
}

/// The group's GPU and worker index per member, when the names say them.
fn members(drafts: &[Draft], idx: &[usize]) -> Option<Vec<Member>> {
    let numbers: Vec<Vec<u64>> = idx
        .iter()
        .map(|&i| {
            tokens(&drafts[i].name)
                .into_iter()
                .filter(|(d, _)| *d)
                .filter_map(|(_, t)| t.parse().ok())
                .collect()
        })
        .collect();
    let gpu_of = |i: usize| {
        drafts[i]
            .gpus
            .as_ref()
            .and_then(Gpus::single_index)
            .map(u64::from)
    };
    let positions = numbers.first()?.len();
    let gpu_pos = (0..positions).find(|&p| {
        idx.iter()
            .zip(&numbers)
            .all(|(&i, n)| Some(n[p]) == gpu_of(i))
    })?;
    let varying: Vec<usize> = (0..positions)
        .filter(|&p| p != gpu_pos && numbers.iter().any(|n| n[p] != numbers[0][p]))
        .collect();
    let worker_pos = match varying.as_slice() {
        [w] => Some(*w),
        [] => None,
        _ => return None,
    };
    let mut members: Vec<Member> = idx
        .iter()
        .zip(&numbers)
        .map(|(&at, n)| Member {
            at,
            gpu: n[gpu_pos] as u32,
            worker: worker_pos.map_or(0, |w| n[w]),
        })
        .collect();
    members.sort_by_key(|m| (m.gpu, m.worker));
    // Each (GPU, worker) once.
    if members
        .windows(2)
        .any(|w| (w[0].gpu, w[0].worker) == (w[1].gpu, w[1].worker))
    {
        return None;
    }
    Some(members)
}

/// The one service (or one per GPU, when GPUs have different numbers of workers) that
/// replaces the group; an error says what differs beyond the two numbers.
fn merge_group(
    drafts: &[Draft],
    members: &[Member],
    report: &mut Report,
) -> Result<Vec<Draft>, String> {
    let first = &drafts[members[0].at];
    let mut per_gpu: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for m in members {
        per_gpu.entry(m.gpu).or_default().push(m.worker);
    }
    let base = members.iter().map(|m| m.worker).min().unwrap_or(0);
    // Every key the same but for the numbers; only the command may hold them, and the
    // CPUs may differ (hand-made pinning, which `cpus_per_replica` does for them).
    let mut command: Option<String> = None;
    let mut pinned: Option<u32> = None;
    for e in &first.entries {
        let values: Vec<(&Member, &Entry)> = members
            .iter()
            .map(|m| {
                drafts[m.at]
                    .get(&e.key)
                    .map(|x| (m, x))
                    .ok_or_else(|| format!("`{}` is not set on every one", e.key))
            })
            .collect::<Result<_, _>>()?;
        if values.iter().all(|(_, x)| x.value == e.value) {
            continue;
        }
        if e.key == "cpus" {
            pinned = Some(
                cores(
                    &values
                        .iter()
                        .map(|(_, x)| x.value.as_str())
                        .collect::<Vec<_>>(),
                )
                .ok_or("their `cpuset`s hold different numbers of CPUs")?,
            );
            continue;
        }
        if e.key != "command" {
            return Err(format!("`{}` differs between them", e.key));
        }
        command = Some(templated_command(&values, first, base, per_gpu.len())?);
    }
    for m in members {
        let d = &drafts[m.at];
        if d.entries.len() != first.entries.len() {
            return Err("they do not set the same keys".into());
        }
        if d.env != first.env {
            return Err("their environments differ".into());
        }
    }
    let outside: Vec<(String, Condition)> = {
        let inside: Vec<&str> = members.iter().map(|m| drafts[m.at].name.as_str()).collect();
        let mut deps: Vec<(String, Condition)> = Vec::new();
        for m in members {
            for (dep, c) in &drafts[m.at].depends_on {
                if !inside.contains(&dep.as_str()) && !deps.iter().any(|(n, _)| n == dep) {
                    deps.push((dep.clone(), *c));
                }
            }
        }
        deps
    };
    if let Some(k) = pinned {
        report.add(None, "cpuset", What::Changed, format!("the workers' hand-made cpusets became cpus_per_replica = {k}: the plan gives each replica {k} whole core(s) near its GPU, never shared"));
    }
    let counts: Vec<usize> = per_gpu.values().map(Vec::len).collect();
    let uniform = counts.windows(2).all(|w| w[0] == w[1]);
    let taken: Vec<&str> = drafts.iter().map(|d| d.name.as_str()).collect();
    let build = |name: String, gpus: Vec<u32>, per: usize| -> Draft {
        let mut d = first.clone();
        d.name = name;
        d.gpus = Some(Gpus::Indexes(gpus));
        d.depends_on = outside.clone();
        d.compose_lines = 0;
        if let Some(c) = &command {
            d.set("command", string(c), Some("the workers' command, with their GPU and worker numbers taken from the replica's environment".into()));
            d.set("shell", "true".into(), None);
        }
        d.set(
            "replicas_per_gpu",
            per.to_string(),
            Some(format!(
                "replaces {} services written one per GPU and worker",
                members.len()
            )),
        );
        if let Some(k) = pinned {
            d.entries.retain(|e| e.key != "cpus");
            d.set("cpus_per_replica", k.to_string(), Some("their hand-made cpusets: the plan picks whole cores near each replica's GPU, never shared (`steward plan` shows which)".into()));
        }
        d
    };
    if uniform {
        let name = free(collapsed_name(&first.name, true), &taken, members, drafts);
        return Ok(vec![build(
            name,
            per_gpu.keys().copied().collect(),
            counts[0],
        )]);
    }
    Ok(per_gpu
        .iter()
        .map(|(gpu, workers)| {
            let one = members
                .iter()
                .find(|m| m.gpu == *gpu)
                .map_or(first.name.as_str(), |m| drafts[m.at].name.as_str());
            let name = free(collapsed_name(one, false), &taken, members, drafts);
            build(name, vec![*gpu], workers.len())
        })
        .collect())
}

/// Whole cores per member, from cpusets of the same size (`"0,12"`: a core and its
/// hyper-thread sibling, when every set pairs CPUs at one distance); `None` when they differ.
fn cores(sets: &[&str]) -> Option<u32> {
    let cpus: Vec<Vec<u32>> = sets
        .iter()
        .map(|s| {
            let text = s.trim_matches('"');
            let mut out = Vec::new();
            for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match part.split_once('-') {
                    Some((a, b)) => out.extend(a.parse::<u32>().ok()?..=b.parse::<u32>().ok()?),
                    None => out.push(part.parse().ok()?),
                }
            }
            Some(out)
        })
        .collect::<Option<_>>()?;
    let n = cpus.first()?.len();
    if n == 0 || cpus.iter().any(|c| c.len() != n) {
        return None;
    }
    let distance = |c: &Vec<u32>| (c.len() == 2).then(|| c[1].abs_diff(c[0]));
    let paired = n == 2
        && cpus.iter().all(|c| distance(c) == distance(&cpus[0]))
        && distance(&cpus[0]) > Some(1);
    Some(if paired { 1 } else { n as u32 })
}

/// The command with its varying numbers replaced: the GPU's index by `$STEWARD_GPU`, the
/// worker's by its index on its GPU (`STEWARD_REPLICA` counts across GPUs).
fn templated_command(
    values: &[(&Member, &Entry)],
    first: &Draft,
    base: u64,
    gpus: usize,
) -> Result<String, String> {
    let line = |e: &Entry| crate::draft::as_line(&e.value).unwrap_or_default();
    let cut: Vec<Vec<(bool, String)>> = values.iter().map(|(_, e)| tokens(&line(e))).collect();
    if cut.iter().any(|t| t.len() != cut[0].len()) {
        return Err("their commands differ in more than their numbers".into());
    }
    let worker = if gpus == 1 {
        format!("$((STEWARD_REPLICA + {base}))")
    } else {
        format!("$((STEWARD_REPLICA / {gpus} + {base}))")
    };
    let worker = worker.replace(" + 0))", "))");
    let mut out = String::new();
    for (p, (digit, text)) in cut[0].iter().enumerate() {
        if !digit {
            if cut.iter().any(|t| t[p] != cut[0][p]) {
                return Err("their commands differ in more than their numbers".into());
            }
            out.push_str(text);
            continue;
        }
        let nums: Vec<u64> = cut
            .iter()
            .map(|t| t[p].1.parse().unwrap_or(u64::MAX))
            .collect();
        if nums.iter().all(|n| *n == nums[0]) {
            out.push_str(text);
        } else if values
            .iter()
            .zip(&nums)
            .all(|((m, _), n)| u64::from(m.gpu) == *n)
        {
            out.push_str("$STEWARD_GPU");
        } else if values.iter().zip(&nums).all(|((m, _), n)| m.worker == *n) {
            out.push_str(&worker);
        } else {
            return Err(format!(
                "{}'s command holds a number that is neither its GPU nor its worker index",
                first.name
            ));
        }
    }
    Ok(out)
}

/// `pipeline-gpu0-w3` -> `pipeline` (both numbers and the letters before them gone), or
/// `pipeline-gpu0` when only the worker's number goes.
fn collapsed_name(name: &str, drop_gpu: bool) -> String {
    let t = tokens(name);
    let digit_runs: Vec<usize> = t
        .iter()
        .enumerate()
        .filter(|(_, (d, _))| *d)
        .map(|(i, _)| i)
        .collect();
    // The worker's number is the last run; the GPU's the one before it.
    let mut drop: Vec<usize> = digit_runs
        .iter()
        .rev()
        .take(if drop_gpu { 2 } else { 1 })
        .copied()
        .collect();
    drop.sort_unstable();
    let mut parts: Vec<String> = t.iter().map(|(_, s)| s.clone()).collect();
    for &i in &drop {
        parts[i].clear();
        if i > 0 {
            let prev = parts[i - 1]
                .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                .to_string();
            parts[i - 1] = prev;
        }
    }
    let mut joined = String::new();
    for c in parts.concat().chars() {
        let sep = matches!(c, '-' | '_' | '.');
        if sep && (joined.is_empty() || joined.ends_with(['-', '_', '.'])) {
            continue;
        }
        joined.push(c);
    }
    let name = joined.trim_end_matches(['-', '_', '.']).to_string();
    if name.is_empty() {
        "workers".into()
    } else {
        name
    }
}

/// `name`, or `name-workers` when another service (not a member) has it.
fn free(name: String, taken: &[&str], members: &[Member], drafts: &[Draft]) -> String {
    let ours = |n: &str| members.iter().any(|m| drafts[m.at].name == n);
    if taken.iter().any(|t| *t == name && !ours(t)) {
        format!("{name}-workers")
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_numbers_and_the_letters_before_them() {
        assert_eq!(collapsed_name("pipeline-gpu0-w3", true), "pipeline");
        assert_eq!(collapsed_name("pipeline-gpu0-w3", false), "pipeline-gpu0");
        assert_eq!(collapsed_name("vllm_1_2", true), "vllm");
        assert_eq!(collapsed_name("0-1", true), "workers");
        assert_eq!(shape("pipeline-gpu1-w4"), "pipeline-gpu#-w#");
    }
}
