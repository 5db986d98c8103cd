//! `up --detach` returns once the agent answers; `down` then stops it all.

mod common;
use common::*;

#[test]
fn detach_then_ps_then_down() {
    let agent = Agent::prepare("[services.s]\ncommand = [\"sleep\", \"1000\"]\n");
    let cfg = agent.config.to_str().unwrap().to_string();
    let out = std::process::Command::new(BIN)
        .args(["up", "--detach", "-f", &cfg])
        .env("STEWARD_TEST_TAG", &agent.tag)
        .current_dir(agent.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("running in the background"),
        "{}",
        stdout(&out)
    );
    let svc = agent.running("s");
    let pid = svc["pid"].as_u64().unwrap() as u32;
    let agent_pid = agent.ps()["agent"]["pid"].as_u64().unwrap() as u32;

    let out = agent.cli(&["ps"]);
    let table = stdout(&out);
    assert!(
        table.contains("NAME") && table.contains("running"),
        "{table}"
    );

    let out = agent.cli(&["down"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until("the agent to exit", LONG, || !pid_alive(agent_pid));
    assert!(!pid_alive(pid));
    assert!(
        !agent.state_dir().join("steward.sock").exists(),
        "socket removed on the way out"
    );
    let out = agent.cli(&["ps"]);
    assert!(
        stderr(&out).contains("no steward agent is running"),
        "{}",
        stderr(&out)
    );
}
