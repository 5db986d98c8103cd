//! Bad input and faults: each gets one clear line naming the cause, and nothing is left
//! running.

mod common;
use common::*;

#[test]
fn a_missing_binary_refuses_up_by_name() {
    let agent = Agent::prepare("[services.web]\ncommand = [\"pyhton3\", \"serve.py\"]\n");
    let out = steward(&["up", "-f", agent.config.to_str().unwrap()], agent.path());
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("services.web.command: program \"pyhton3\" not found in PATH"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn a_limit_larger_than_the_host_is_refused() {
    let agent =
        Agent::prepare("[services.big]\ncommand = [\"sleep\", \"1\"]\nmemory = \"500TiB\"\n");
    let out = steward(&["up", "-f", agent.config.to_str().unwrap()], agent.path());
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(
            "services.big.memory: memory limits of 500.00 TiB (549.76 TB) plus a reserve of"
        ),
        "{err}"
    );
}

#[test]
fn a_second_up_on_the_same_state_dir_is_refused() {
    let agent = Agent::start("[services.s]\ncommand = [\"sleep\", \"1000\"]\n");
    let out = agent.cli(&["up"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    agent.running("s");
    let pid = agent.ps()["agent"]["pid"].as_u64().unwrap();
    assert!(
        err.contains(&format!(
            "another steward agent (pid {pid}) already runs on the state dir"
        )),
        "{err}"
    );
    // The first agent is unharmed.
    assert_eq!(agent.service("s")["state"], "running");
}

#[test]
fn a_stale_socket_is_replaced_and_no_agent_is_reported_clearly() {
    let agent = Agent::prepare("[services.s]\ncommand = [\"sleep\", \"1000\"]\n");
    std::fs::create_dir_all(agent.state_dir()).unwrap();
    // A socket file whose listener is gone, as after a kill -9.
    drop(std::os::unix::net::UnixListener::bind(agent.state_dir().join("steward.sock")).unwrap());
    let out = agent.cli(&["ps"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no steward agent is running for"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("start one with `steward up`"),
        "{}",
        stderr(&out)
    );

    let agent = agent.launch(&[]);
    agent.running("s");
    let mode = std::fs::metadata(agent.state_dir().join("steward.sock")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
}

#[test]
fn an_agent_killed_hard_leaves_nothing_the_next_one_does_not_clean() {
    if !require_cgroups("an_agent_killed_hard_leaves_nothing_the_next_one_does_not_clean") {
        return;
    }
    let mut agent = Agent::start("[services.s]\ncommand = [\"sleep\", \"1000\"]\n");
    let old = agent.running("s")["pid"].as_u64().unwrap() as u32;
    let mut child = agent.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(pid_alive(old), "the service outlives a SIGKILLed agent");
    let agent = agent.launch(&[]);
    wait_until("the leftover to be killed", LONG, || !pid_alive(old));
    let ev = agent
        .events()
        .into_iter()
        .find(|e| e["event"] == "leftovers_killed")
        .expect("leftovers_killed event");
    assert_eq!(ev["pids"][0].as_u64().unwrap() as u32, old);
    agent.running("s");
}

#[test]
fn without_writable_cgroups_limits_fall_back_to_soft_and_say_so() {
    if !require_cgroups("without_writable_cgroups_limits_fall_back_to_soft_and_say_so") {
        return;
    }
    // An unprivileged agent cannot create cgroups here: it must say so and use the RSS
    // watchdog, which still stops a runaway process.
    let agent = Agent::prepare(
        r#"
[services.hog]
command = ["python3", "-c", "import time\nx=[]\nwhile True:\n    x.append(b'x' * (8<<20)); time.sleep(0.05)"]
memory = "64MiB"
restart = "never"
"#,
    );
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o777);
    std::fs::set_permissions(agent.path(), mode).unwrap();
    let agent = agent.launch(&[
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ]);
    let svc = agent.service("hog");
    assert_eq!(svc["enforcement"], "soft", "{svc}");
    let limits = agent
        .events()
        .into_iter()
        .find(|e| e["event"] == "limits")
        .expect("a limits event");
    assert!(
        limits["note"]
            .as_str()
            .unwrap()
            .contains("memory limits are soft"),
        "{limits}"
    );
    agent.wait_for("the watchdog to kill the hog", |a| {
        a.service("hog")["state"] == "failed"
    });
    let exit = &agent.service("hog")["last_exit"];
    assert_eq!(exit["class"], "oom_killed", "{exit}");
    assert_eq!(exit["source"], "watchdog");
    assert!(exit["peak"].as_u64().unwrap() > 64 << 20, "{exit}");
}

#[test]
fn a_program_that_vanishes_fails_the_service_instead_of_looping() {
    // It exists when `up` checks, then deletes itself and exits: every restart would find
    // nothing to run, so the service goes to failed with the reason, once.
    let agent = Agent::prepare(
        "[services.gone]\ncommand = [\"./run.sh\"]\nbackoff = { initial = \"0s\", max = \"0s\" }\n",
    );
    let script = agent.path().join("run.sh");
    std::fs::write(&script, "#!/bin/sh\nrm -f \"$0\"\nexit 1\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let agent = agent.launch(&[]);
    agent.wait_for("gone to fail", |a| a.service("gone")["state"] == "failed");
    let svc = agent.service("gone");
    assert_eq!(svc["last_exit"]["class"], "spawn_failed", "{svc}");
    assert!(
        svc["last_exit"]["reason"]
            .as_str()
            .unwrap()
            .contains("not found"),
        "{svc}"
    );
    let failed_spawns = agent
        .events_of("gone", "exited")
        .iter()
        .filter(|e| e["class"] == "spawn_failed")
        .count();
    assert_eq!(failed_spawns, 1, "tried once, not in a loop");
}

/// This agent's groups that exist, in each v1 hierarchy (under this process's own group,
/// where an agent started by this test makes them).
fn agent_groups(state_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let id = steward_config::StateDir::new(state_dir).agent_id();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut found = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        for c in controllers
            .split(',')
            .filter(|c| ["memory", "pids", "cpuset"].contains(c))
        {
            let dir = std::path::Path::new("/sys/fs/cgroup")
                .join(c)
                .join(path.trim_start_matches('/'))
                .join(format!("steward-{id}"));
            if dir.exists() {
                found.push(dir);
            }
        }
    }
    found
}

#[test]
fn a_failed_up_and_a_clean_down_leave_no_groups_socket_or_half_events() {
    if !require_cgroups("a_failed_up_and_a_clean_down_leave_no_groups_socket_or_half_events") {
        return;
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let agent = Agent::prepare(&format!(
        "[services.w]\ncommand = [\"sleep\", \"1000\"]\ncpus = \"0\"\nmemory = \"64MiB\"\npids_max = 100\n[gateway]\nlisten = \"127.0.0.1:{port}\"\n[[gateway.routes]]\nmodel = \"m\"\nbackends = [{{ url = \"http://127.0.0.1:1\" }}]\n"
    ));
    let out = agent.cli(&["up"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot listen there"),
        "{}",
        stderr(&out)
    );
    let sd = agent.state_dir();
    assert!(agent_groups(&sd).is_empty(), "{:?}", agent_groups(&sd));
    assert!(!sd.join("steward.sock").exists());
    let halves = |a: &Agent| {
        let ev = a.events();
        let n = |k: &str| ev.iter().filter(|e| e["event"] == k).count();
        (n("agent_started"), n("agent_stopped"))
    };
    let (started, stopped) = halves(&agent);
    assert_eq!(
        started, stopped,
        "every agent_started has its agent_stopped"
    );
    // A clean run, then `down`: nothing left either, cpuset included.
    drop(taken);
    let mut agent = agent.launch(&[]);
    agent.running("w");
    assert!(
        !agent_groups(&agent.state_dir()).is_empty(),
        "the groups exist while it runs"
    );
    agent.down();
    assert!(
        agent_groups(&agent.state_dir()).is_empty(),
        "{:?}",
        agent_groups(&agent.state_dir())
    );
    let (started, stopped) = halves(&agent);
    assert_eq!((started, stopped), (1, 1));
}

#[test]
fn a_deleted_control_socket_is_made_again() {
    let agent = Agent::start("[services.w]\ncommand = [\"sleep\", \"1000\"]\n");
    agent.running("w");
    std::fs::remove_file(agent.state_dir().join("steward.sock")).unwrap();
    agent.wait_for("ps to answer again", |a| {
        a.cli(&["ps", "--json"]).status.success()
    });
    assert!(
        agent.agent_log().contains("made it again"),
        "{}",
        agent.agent_log()
    );
}

#[test]
fn down_with_a_dead_agent_stops_what_it_left_and_ps_says_they_exist() {
    let mut agent = Agent::start(
        "[services.s]\ncommand = [\"sleep\", \"1000\"]\n[services.d]\n# A daemon that left the process group and the session.\ncommand = \"setsid sleep 1000 & exec sleep 1000\"\nshell = true\n",
    );
    let s = agent.running("s")["pid"].as_u64().unwrap() as u32;
    agent.running("d");
    let mut child = agent.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(pid_alive(s), "the service outlives a SIGKILLed agent");
    let ps = agent.cli(&["ps"]);
    assert_eq!(ps.status.code(), Some(2));
    assert!(
        stderr(&ps).contains("process(es) of its services are still running"),
        "{}",
        stderr(&ps)
    );
    let down = agent.cli(&["down"]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(
        stdout(&down).contains("it died); stopped the"),
        "{}",
        stdout(&down)
    );
    wait_until("the leftovers to be gone", LONG, || !pid_alive(s));
    // The daemon went too: nothing carrying this agent's marker is left.
    let again = agent.cli(&["down"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("nothing to stop"),
        "{}",
        stderr(&again)
    );
}
