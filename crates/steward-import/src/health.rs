//! A compose `healthcheck` as steward's `health`, with the same timing semantics. A test
//! that fetches a local URL (`curl -f http://localhost:8000/health`, `wget --spider …`)
//! becomes an `http` check, which needs no curl on the host and treats 503 as "not ready
//! yet"; any other test is run as it was (`exec`).

use crate::draft::{array, inline, string, Draft};
use crate::report::{Report, What};
use crate::units::duration;
use crate::yaml::{Kind, Node};

pub fn healthcheck(d: &mut Draft, name: &str, h: &Node, report: &mut Report) {
    if matches!(h.get("disable").map(|v| &v.kind), Some(Kind::Bool(true))) {
        report.add(
            Some(name),
            "healthcheck",
            What::Dropped,
            "disabled: no health check",
        );
        return;
    }
    let test: Vec<String> = match h.get("test").map(|t| &t.kind) {
        Some(Kind::Seq(items)) => items.iter().filter_map(Node::scalar).collect(),
        Some(Kind::Str(s)) => vec!["CMD-SHELL".into(), s.clone()],
        _ => {
            report.add(
                Some(name),
                "healthcheck",
                What::CannotMap,
                "no `test`: the image's own HEALTHCHECK is not known here; write a `health` check",
            );
            return;
        }
    };
    let (form, args) = match test.split_first() {
        Some((f, rest)) => (f.as_str(), rest.to_vec()),
        None => return,
    };
    let probe = match form {
        "NONE" => {
            report.add(
                Some(name),
                "healthcheck",
                What::Dropped,
                "test: NONE: no health check",
            );
            return;
        }
        "CMD" => {
            if args.is_empty() {
                report.add(
                    Some(name),
                    "healthcheck.test",
                    What::CannotMap,
                    "CMD with no program",
                );
                return;
            }
            local_url(&args).map_or_else(
                || ("exec", array(args.iter().map(|a| string(a)))),
                |u| ("http", string(&u)),
            )
        }
        "CMD-SHELL" => {
            let line = args.join(" ");
            let words = shlex::split(&line).unwrap_or_default();
            match local_url(&words) {
                Some(u) if simple_fetch(&line) => ("http", string(&u)),
                _ => (
                    "exec",
                    array(["sh", "-c", line.as_str()].into_iter().map(string)),
                ),
            }
        }
        other => {
            report.add(
                Some(name),
                "healthcheck.test",
                What::CannotMap,
                format!("\"{other}\" is not a test form compose knows (CMD, CMD-SHELL, NONE)"),
            );
            return;
        }
    };
    let mut items = vec![(probe.0.to_string(), probe.1.clone())];
    for (key, steward) in [
        ("interval", "interval"),
        ("timeout", "timeout"),
        ("start_period", "start_period"),
        ("start_interval", "start_interval"),
    ] {
        if let Some(v) = h.get(key).and_then(Node::scalar) {
            match duration(&v) {
                Ok(t) => items.push((steward.into(), string(&t))),
                Err(e) => report.add(
                    Some(name),
                    &format!("healthcheck.{key}"),
                    What::CannotMap,
                    e,
                ),
            }
        }
    }
    if let Some(Kind::Int(n)) = h.get("retries").map(|r| &r.kind) {
        if *n > 0 {
            items.push(("retries".into(), n.to_string()));
        }
    }
    let text = inline(&items);
    let note = if probe.0 == "http" {
        "an http check: 2xx healthy, 503 not ready yet, no curl needed on the host".to_string()
    } else {
        "runs the test as compose did".to_string()
    };
    d.set(
        "health",
        text.clone(),
        Some(format!("compose: healthcheck ({note})")),
    );
    report.add(
        Some(name),
        "healthcheck",
        What::Mapped,
        format!("health = {text}"),
    );
}

/// The local URL a curl or wget test fetches (`localhost`, `127.0.0.1`, `0.0.0.0`), as
/// `http://127.0.0.1:PORT/path`.
fn local_url(words: &[String]) -> Option<String> {
    let prog = words.first()?;
    if !(prog.ends_with("curl") || prog.ends_with("wget")) {
        return None;
    }
    let url = words.iter().find(|w| w.starts_with("http://"))?;
    let rest = &url["http://".len()..];
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok()?),
        None => (hostport, 80),
    };
    if !matches!(host, "localhost" | "127.0.0.1" | "0.0.0.0" | "[::1]") {
        return None;
    }
    let path = if path.is_empty() { "/" } else { path };
    Some(format!("http://127.0.0.1:{port}{path}"))
}

/// A shell test that only fetches (a `|| exit 1` after it changes nothing); one that
/// pipes the answer into something else checks more than the status.
fn simple_fetch(line: &str) -> bool {
    let fetch = line.split("||").next().unwrap_or("");
    !fetch.contains('|') && !fetch.contains("&&") && !fetch.contains(';')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health_of(yaml: &str) -> Option<String> {
        let n = crate::yaml::parse(yaml).unwrap();
        let mut d = Draft::new("s");
        healthcheck(&mut d, "s", &n, &mut Report::default());
        d.get("health").map(|e| e.value.clone())
    }

    #[test]
    fn curl_to_localhost_becomes_http_others_exec() {
        assert_eq!(
            health_of("test: [\"CMD\", \"curl\", \"-f\", \"http://localhost:8000/health\"]\ninterval: 1m30s\nretries: 3\n").unwrap(),
            "{ http = \"http://127.0.0.1:8000/health\", interval = \"90s\", retries = 3 }"
        );
        assert_eq!(
            health_of("test: curl -f http://localhost:8080/ || exit 1\n").unwrap(),
            "{ http = \"http://127.0.0.1:8080/\" }"
        );
        assert_eq!(
            health_of("test: [\"CMD-SHELL\", \"curl -s http://localhost/x | grep ok\"]\n").unwrap(),
            "{ exec = [\"sh\", \"-c\", \"curl -s http://localhost/x | grep ok\"] }"
        );
        assert_eq!(
            health_of("test: [\"CMD\", \"redis-cli\", \"ping\"]\nstart_period: 10s\nstart_interval: 1s\ntimeout: 5s\n").unwrap(),
            "{ exec = [\"redis-cli\", \"ping\"], timeout = \"5s\", start_period = \"10s\", start_interval = \"1s\" }"
        );
        assert_eq!(health_of("test: [\"NONE\"]\n"), None);
        assert_eq!(health_of("disable: true\n"), None);
        assert_eq!(
            health_of("test: [\"CMD\", \"curl\", \"-f\", \"http://db.internal:8000/\"]\n").unwrap(),
            "{ exec = [\"curl\", \"-f\", \"http://db.internal:8000/\"] }"
        );
    }
}
