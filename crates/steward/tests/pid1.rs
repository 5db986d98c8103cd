//! steward as PID 1 (a container's init): it reaps every orphan, forwards SIGHUP to its
//! services (as tini does), and SIGTERM stops the services cleanly and exits 0. Run under
//! `unshare --pid --fork --mount-proc`.

mod common;
use common::*;

/// The agent's pid as the host sees it: the child of the `unshare` process.
fn host_pid_of_agent(unshare_pid: u32) -> u32 {
    let children =
        std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
            .unwrap();
    children
        .split_whitespace()
        .next()
        .expect("unshare has a child")
        .parse()
        .unwrap()
}

fn zombie_children(pid: u32) -> Vec<u32> {
    let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) else {
        return vec![];
    };
    children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .filter(|c: &u32| {
            std::fs::read_to_string(format!("/proc/{c}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
        })
        .collect()
}

#[test]
fn as_pid_1_it_reaps_orphans_and_stops_cleanly_on_sigterm() {
    if std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        panic!("this test needs `unshare --pid --fork --mount-proc` (root, util-linux)");
    }
    // Every 20 ms the service leaves an orphan behind: a background sleep whose parent
    // subshell has already exited.
    let mut agent = Agent::prepare(
        r#"
[services.orphan-maker]
command = "while true; do (sleep 0.01 &); sleep 0.02; done"
shell = true
[services.reloadable]
command = "trap 'echo reloaded >> hup.txt' HUP; echo ready > ready.txt; while true; do sleep 0.05; done"
shell = true
"#,
    )
    .launch(&["unshare", "--pid", "--fork", "--mount-proc"]);

    let ps = agent.ps();
    assert_eq!(ps["agent"]["pid"], 1, "steward is PID 1 in its namespace");
    agent.wait_for("orphans to be reaped", |a| {
        a.ps()["agent"]["orphans_reaped"].as_u64().unwrap() >= 20
    });

    let unshare_pid = agent.child.as_ref().unwrap().id();
    let steward_pid = host_pid_of_agent(unshare_pid);
    // Orphans keep coming, so a zombie may exist for an instant; none may stay.
    wait_until("no zombie children of steward", LONG, || {
        zombie_children(steward_pid).is_empty()
    });

    let main = agent.running("orphan-maker")["pid"].as_u64().unwrap();
    assert!(main > 1);
    // As a container's init, SIGHUP goes on to the services.
    let ready = agent.path().join("ready.txt");
    wait_until("the service to install its trap", LONG, || ready.exists());
    // SAFETY: plain kill.
    unsafe { libc::kill(steward_pid as i32, libc::SIGHUP) };
    let hup = agent.path().join("hup.txt");
    wait_until("the service to see SIGHUP", LONG, || {
        std::fs::read_to_string(&hup).is_ok_and(|s| s.contains("reloaded"))
    });
    assert_eq!(agent.service("reloadable")["state"], "running");
    // SIGTERM to PID 1 stops the services, and steward exits 0.
    // SAFETY: plain kill.
    unsafe { libc::kill(steward_pid as i32, libc::SIGTERM) };
    let mut child = agent.child.take().unwrap();
    let mut status = None;
    wait_until("steward to exit after SIGTERM", LONG, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert!(
        status.unwrap().success(),
        "exit status {:?}\n{}",
        status,
        agent.agent_log()
    );
    let log = agent.agent_log();
    assert!(log.contains("SIGTERM: stopping every service"), "{log}");
    assert!(log.contains("orphan-maker: stopped"), "{log}");
}
