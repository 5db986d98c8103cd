//! One compose service to one steward service: each key it has either becomes the steward
//! key that means the same (with a note where the meaning shifts) or is reported as left
//! out, with why and what to do instead.

use crate::compose::as_mapping;
use crate::draft::{array, inline, string, Condition, Draft};
use crate::gpus::gpus;
use crate::health::healthcheck;
use crate::limits::{memory, pids, ulimits};
use crate::report::{Report, What};
use crate::units::{duration, size};
use crate::unmapped::NOT_FOR_HOST;
use crate::yaml::{Kind, Node};
use std::collections::BTreeMap;
use std::path::Path;

/// Maps the compose service `name` (its node `svc`); `dir` is the project's folder (for
/// `env_file`), `vars` the interpolation variables (for pass-through environment).
pub fn service(
    name: &str,
    svc: &Node,
    dir: &Path,
    vars: &BTreeMap<String, String>,
    report: &mut Report,
) -> Draft {
    let mut d = Draft::new(name);
    d.compose_lines = svc.end_line.saturating_sub(svc.line) + 1;
    let say =
        |r: &mut Report, key: &str, what: What, note: String| r.add(Some(name), key, what, note);
    let mut env = environment(name, svc, dir, vars, report);
    command(&mut d, svc, report);
    for (key, value) in svc.entries() {
        match key.as_str() {
            "command" | "entrypoint" | "image" | "build" | "environment" | "env_file" | "healthcheck"
            | "depends_on" | "deploy" | "runtime" => {}
            "working_dir" => {
                if let Some(w) = value.scalar() {
                    d.set("cwd", string(&w), Some("compose: working_dir".into()));
                    say(report, key, What::Mapped, format!("cwd = {w:?} (a path on this host now)"));
                }
            }
            "restart" => restart(&mut d, name, value.scalar().unwrap_or_default(), "restart", None, report),
            "stop_signal" => {
                if let Some(s) = value.scalar() {
                    let s = if s.starts_with("SIG") { s } else { format!("SIG{s}") };
                    d.set("stop_signal", string(&s), None);
                    say(report, key, What::Mapped, format!("stop_signal = {s:?}"));
                }
            }
            "stop_grace_period" => match value.scalar().map(|s| duration(&s)) {
                Some(Ok(t)) => {
                    d.set("stop_timeout", string(&t), Some("compose: stop_grace_period".into()));
                    say(report, key, What::Mapped, format!("stop_timeout = {t:?}"));
                }
                Some(Err(e)) => say(report, key, What::CannotMap, e),
                None => {}
            },
            "mem_limit" => memory(&mut d, name, "memory", key, value, report),
            "memswap_limit" => memory(&mut d, name, "memory_swap", key, value, report),
            "pids_limit" => pids(&mut d, name, key, value, report),
            "oom_score_adj" => match value.kind {
                Kind::Int(i) if (-1000..=1000).contains(&i) => {
                    d.set("oom_score_adj", i.to_string(), None);
                    say(report, key, What::Mapped, format!("oom_score_adj = {i} (steward's default for services is 500: they die before the host)"));
                }
                _ => say(report, key, What::CannotMap, "not a number from -1000 to 1000".into()),
            },
            "cpuset" => {
                if let Some(c) = value.scalar() {
                    d.set("cpus", string(&c), Some("compose: cpuset".into()));
                    say(report, key, What::Mapped, format!("cpus = {c:?}"));
                }
            }
            "ulimits" => ulimits(&mut d, name, value, report),
            "cpus" => cpu_quota(&mut d, name, "cpus", value, report),
            "init" => say(report, key, What::Dropped, "steward reaps every orphan itself (it is a child subreaper, and PID 1 when it runs as a container's init)".into()),
            "dns" | "dns_search" | "dns_opt" => say(report, key, What::Dropped, "host processes use the host's resolvers: `steward doctor` checks that they answer".into()),
            "logging" => logging(&mut d, name, value, report),
            "scale" => replicas(&mut d, name, key, value, report),
            k if k.starts_with("x-") => {}
            k => match NOT_FOR_HOST.iter().find(|(n, _)| *n == k) {
                Some((_, why)) => say(report, key, What::CannotMap, (*why).to_string()),
                None => say(report, key, What::CannotMap, "steward does not do this".into()),
            },
        }
    }
    if let Some(deploy) = svc.get("deploy") {
        self::deploy(&mut d, name, deploy, report);
    }
    gpus(&mut d, name, svc, &mut env, report);
    if let Some(h) = svc.get("healthcheck") {
        healthcheck(&mut d, name, h, report);
    }
    if let Some(deps) = svc.get("depends_on") {
        depends_on(&mut d, name, deps, report);
    }
    d.env = env;
    d
}

/// `entrypoint` and `command` together, as the container would have run them.
fn command(d: &mut Draft, svc: &Node, report: &mut Report) {
    let name = d.name.clone();
    let entry = svc.get("entrypoint").and_then(words);
    let cmd = svc.get("command").and_then(words);
    let image = svc.get("image").and_then(Node::scalar);
    let argv: Option<Words> = match (entry, cmd) {
        (None, None) => None,
        (Some(e), None) => Some(e),
        (None, Some(c)) => Some(c),
        (Some(Words::List(mut e)), Some(Words::List(c))) => {
            e.extend(c);
            Some(Words::List(e))
        }
        (Some(e), Some(c)) => Some(Words::Line(format!("{} {}", e.line(), c.line()))),
    };
    match argv {
        // Only arguments: they followed the image's entrypoint, which is not known here.
        Some(w)
            if image.is_some()
                && svc.get("entrypoint").is_none()
                && w.line().trim_start().starts_with('-') =>
        {
            d.active = false;
            d.todo.push(format!("TODO: the command ({}) holds only arguments to the image's own entrypoint; give the program that takes them on this host", w.line().trim()));
            report.add(Some(&name), "command", What::Todo, "only arguments to the image's entrypoint: written commented out; put the program in front of them");
            report.add(
                Some(&name),
                "image",
                What::Todo,
                format!(
                    "{}'s own entrypoint took those arguments: install what it runs on this host",
                    image.as_deref().unwrap_or("the image")
                ),
            );
            return;
        }
        Some(Words::List(v)) if !v.is_empty() => {
            d.set("command", array(v.iter().map(|a| string(a))), None);
            report.add(
                Some(&name),
                "command",
                What::Mapped,
                "an argv list, run as it is",
            );
        }
        Some(Words::Line(l)) if !l.trim().is_empty() => {
            d.set(
                "command",
                string(&l),
                Some("compose gave a string: run through sh".into()),
            );
            d.set("shell", "true".into(), None);
            report.add(Some(&name), "command", What::Changed, "a string: written with shell = true, so sh runs it (compose split it into words itself)");
        }
        _ => {
            d.active = false;
            let what = match (&image, svc.get("build")) {
                (Some(i), _) => format!("it runs the image {i} with the image's own command"),
                (None, Some(_)) => "it runs an image built from `build:`".to_string(),
                (None, None) => "it has no command".to_string(),
            };
            d.todo.push(format!("TODO: {what}; steward runs host processes, not containers: install the program on this host and give its command"));
            report.add(Some(&name), if image.is_some() { "image" } else { "build" }, What::Todo, format!("{what}, and no command: written commented out; give the command that runs it on this host"));
            return;
        }
    }
    if let Some(i) = image {
        report.add(Some(&name), "image", What::Dropped, format!("the command ran inside {i}: make sure the program and the files it needs are on this host"));
    } else if svc.get("build").is_some() {
        report.add(Some(&name), "build", What::Dropped, "the command ran in an image built from `build:`: build or install the program on this host");
    }
}

enum Words {
    List(Vec<String>),
    Line(String),
}

impl Words {
    fn line(&self) -> String {
        match self {
            Words::Line(l) => l.clone(),
            Words::List(v) => v
                .iter()
                .map(|a| shlex::try_quote(a).map_or_else(|_| a.clone(), |q| q.into_owned()))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

fn words(n: &Node) -> Option<Words> {
    match &n.kind {
        Kind::Seq(items) => Some(Words::List(items.iter().filter_map(Node::scalar).collect())),
        Kind::Null => None,
        _ => n.scalar().map(Words::Line),
    }
}

/// `environment` and `env_file`: the service's variables, the files' first, the
/// environment's over them; a variable with no value is taken from the import's own
/// environment (compose passes it through).
fn environment(
    name: &str,
    svc: &Node,
    dir: &Path,
    vars: &BTreeMap<String, String>,
    report: &mut Report,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    if let Some(files) = svc.get("env_file") {
        let list: Vec<(String, bool)> = match &files.kind {
            Kind::Seq(items) => items
                .iter()
                .filter_map(|i| match i.get("path") {
                    Some(p) => Some((
                        p.scalar()?,
                        !matches!(i.get("required").map(|r| &r.kind), Some(Kind::Bool(false))),
                    )),
                    None => Some((i.scalar()?, true)),
                })
                .collect(),
            _ => files.scalar().map(|f| vec![(f, true)]).unwrap_or_default(),
        };
        for (file, required) in list {
            match std::fs::read_to_string(dir.join(&file)) {
                Ok(text) => {
                    let read = crate::interpolate::parse_dotenv(&text);
                    report.add(
                        Some(name),
                        "env_file",
                        What::Mapped,
                        format!("{} variable(s) of {file} written into env", read.len()),
                    );
                    env.extend(read);
                }
                Err(e) if required => report.add(
                    Some(name),
                    "env_file",
                    What::CannotMap,
                    format!("{file} cannot be read ({e}): its variables are not in env; add them"),
                ),
                Err(_) => report.add(
                    Some(name),
                    "env_file",
                    What::Dropped,
                    format!("{file} is not there and not required"),
                ),
            }
        }
    }
    if let Some(e) = svc.get("environment") {
        for (k, v) in as_mapping(e.clone()).entries() {
            match v.scalar() {
                Some(v) => {
                    env.insert(k.clone(), v);
                }
                None => match vars.get(k) {
                    Some(v) => {
                        env.insert(k.clone(), v.clone());
                        report.add(Some(name), "environment", What::Changed, format!("{k} has no value in the file (compose passes it through): written with its value here now; check it"));
                    }
                    None => report.add(
                        Some(name),
                        "environment",
                        What::Dropped,
                        format!("{k} has no value in the file and is not set here: left out"),
                    ),
                },
            }
        }
    }
    env
}

/// `restart` (or `deploy.restart_policy`), with `on-failure:N`'s count as the crash-loop
/// threshold.
fn restart(
    d: &mut Draft,
    name: &str,
    policy: String,
    key: &str,
    max: Option<i64>,
    report: &mut Report,
) {
    let (kind, n) = match policy.split_once(':') {
        Some((k, n)) => (k.to_string(), n.parse::<i64>().ok()),
        None => (policy.clone(), max),
    };
    let steward = match kind.as_str() {
        "no" | "none" => "never",
        "always" | "unless-stopped" | "any" => "always",
        "on-failure" => "on-failure",
        other => {
            report.add(
                Some(name),
                key,
                What::CannotMap,
                format!("\"{other}\" is not a restart policy compose knows"),
            );
            return;
        }
    };
    d.set(
        "restart",
        string(steward),
        Some(format!("compose: {key}: {policy}")),
    );
    let extra = if kind == "unless-stopped" {
        " (a service stopped with `steward stop` stays stopped, as unless-stopped means)"
    } else {
        ""
    };
    report.add(
        Some(name),
        key,
        What::Mapped,
        format!("restart = \"{steward}\"{extra}"),
    );
    if let Some(n) = n.filter(|n| *n > 0) {
        d.set("crash_loop", inline(&[("exits".into(), n.to_string()), ("window".into(), string("10m"))]), Some(format!("compose stops after {n} failures; steward calls it a crash loop and retries at the longest backoff")));
        report.add(Some(name), key, What::Changed, format!("at most {n} attempts: crash_loop = {{ exits = {n} }}; steward keeps retrying at the longest backoff instead of giving up"));
    }
}

/// A CPU quota (`cpus: 2.5`) as whole cores: steward pins CPUs instead of capping time.
/// An explicit `cpuset` wins.
fn cpu_quota(d: &mut Draft, name: &str, key: &str, value: &Node, report: &mut Report) {
    let n = match &value.kind {
        Kind::Int(i) => *i as f64,
        Kind::Float(f) => *f,
        _ => value.scalar().and_then(|s| s.parse().ok()).unwrap_or(0.0),
    };
    if !(n > 0.0 && n <= 4096.0) {
        report.add(Some(name), key, What::CannotMap, "not a number of CPUs");
        return;
    }
    if d.get("cpus").is_some() {
        report.add(
            Some(name),
            key,
            What::Dropped,
            "its cpuset says which CPUs; steward pins them instead of capping CPU time",
        );
        return;
    }
    let cores = n.ceil() as u32;
    d.set(
        "cpus_per_replica",
        cores.to_string(),
        Some(format!(
            "compose: {key}: {n} (a quota; steward pins whole cores)"
        )),
    );
    report.add(Some(name), key, What::Changed, format!("a quota of {n} CPUs: cpus_per_replica = {cores}, whole cores the plan picks and no other service shares, instead of capped CPU time"));
}

fn logging(d: &mut Draft, name: &str, value: &Node, report: &mut Report) {
    let driver = value
        .get("driver")
        .and_then(Node::scalar)
        .unwrap_or_else(|| "json-file".into());
    if !matches!(driver.as_str(), "json-file" | "local") {
        report.add(Some(name), "logging", What::CannotMap, format!("the {driver} driver: steward writes each service's output to files under its state dir (`steward logs`)"));
        return;
    }
    let opts = value.get("options");
    let max_size = opts.and_then(|o| o.get("max-size")).and_then(Node::scalar);
    let max_file = opts.and_then(|o| o.get("max-file")).and_then(Node::scalar);
    let mut log = Vec::new();
    if let Some(Ok((s, _))) = max_size.as_deref().map(size) {
        log.push(("max_size".to_string(), string(&s)));
    }
    if let Some(n) = max_file.and_then(|f| f.parse::<u32>().ok()) {
        log.push(("keep".to_string(), n.to_string()));
    }
    if log.is_empty() {
        report.add(
            Some(name),
            "logging",
            What::Dropped,
            "no rotation options: steward rotates at 10 MiB and keeps 5 files",
        );
        return;
    }
    let text = inline(&log);
    d.set("log", text.clone(), Some("compose: logging.options".into()));
    report.add(Some(name), "logging", What::Mapped, format!("log = {text}"));
}

fn replicas(d: &mut Draft, name: &str, key: &str, value: &Node, report: &mut Report) {
    if let Kind::Int(n) = value.kind {
        if n >= 1 {
            d.set("replicas", n.to_string(), Some(format!("compose: {key}")));
            report.add(Some(name), key, What::Mapped, format!("replicas = {n}"));
        }
    }
}

/// `deploy`: limits, replicas, restart policy (its GPU reservations are read by `gpus`).
fn deploy(d: &mut Draft, name: &str, deploy: &Node, report: &mut Report) {
    let limits = deploy.get("resources").and_then(|r| r.get("limits"));
    if let Some(m) = limits.and_then(|l| l.get("memory")) {
        memory(
            d,
            name,
            "memory",
            "deploy.resources.limits.memory",
            m,
            report,
        );
    }
    if let Some(p) = limits.and_then(|l| l.get("pids")) {
        pids(d, name, "deploy.resources.limits.pids", p, report);
    }
    if let Some(c) = limits.and_then(|l| l.get("cpus")) {
        cpu_quota(d, name, "deploy.resources.limits.cpus", c, report);
    }
    if deploy
        .get("resources")
        .and_then(|r| r.get("reservations"))
        .and_then(|r| r.get("memory"))
        .is_some()
    {
        report.add(
            Some(name),
            "deploy.resources.reservations.memory",
            What::CannotMap,
            "steward enforces limits (`memory`); the admission plan counts them against the host",
        );
    }
    if let Some(r) = deploy.get("replicas") {
        replicas(d, name, "deploy.replicas", r, report);
    }
    if let Some(p) = deploy.get("restart_policy") {
        let cond = p
            .get("condition")
            .and_then(Node::scalar)
            .unwrap_or_else(|| "any".into());
        let max = p.get("max_attempts").and_then(|m| match m.kind {
            Kind::Int(n) => Some(n),
            _ => None,
        });
        restart(d, name, cond, "deploy.restart_policy", max, report);
    }
    for k in [
        "mode",
        "placement",
        "update_config",
        "rollback_config",
        "endpoint_mode",
        "labels",
    ] {
        if deploy.get(k).is_some() {
            report.add(
                Some(name),
                &format!("deploy.{k}"),
                What::CannotMap,
                "a swarm setting: steward runs on this one node",
            );
        }
    }
}

fn depends_on(d: &mut Draft, name: &str, deps: &Node, report: &mut Report) {
    for (dep, v) in as_mapping(deps.clone()).entries() {
        let cond = match v.get("condition").and_then(Node::scalar).as_deref() {
            None | Some("service_started") => Condition::Started,
            Some("service_healthy") => Condition::Healthy,
            Some("service_completed_successfully") => Condition::Completed,
            Some(other) => {
                report.add(
                    Some(name),
                    "depends_on",
                    What::CannotMap,
                    format!(
                        "{dep}: condition \"{other}\" is not one compose knows; written as started"
                    ),
                );
                Condition::Started
            }
        };
        if matches!(v.get("restart").map(|r| &r.kind), Some(Kind::Bool(true))) {
            report.add(Some(name), "depends_on", What::CannotMap, format!("{dep}: restart: true: steward does not restart a service when its dependency restarts"));
        }
        if matches!(v.get("required").map(|r| &r.kind), Some(Kind::Bool(false))) {
            report.add(Some(name), "depends_on", What::Changed, format!("{dep}: required: false: steward waits for it anyway; remove the dependency if it may be absent"));
        }
        d.depends_on.push((dep.clone(), cond));
    }
    if !d.depends_on.is_empty() {
        let list: Vec<String> = d
            .depends_on
            .iter()
            .map(|(n, c)| format!("{n} = \"{}\"", c.as_str()))
            .collect();
        report.add(
            Some(name),
            "depends_on",
            What::Mapped,
            format!("depends_on = {{ {} }}", list.join(", ")),
        );
    }
}
