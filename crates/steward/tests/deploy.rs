//! The files in `deploy/`: the systemd unit verifies and its ExecStart, run as systemd
//! would run it, speaks the notify protocol; the Kubernetes manifests validate against a
//! current schema and the configs inside them pass `config check`.

mod common;
use common::*;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tool(name: &str, install: &str) -> String {
    which(name).unwrap_or_else(|| panic!("{name} is missing: {install} (scripts/test does)"))
}

/// The unit's `KEY=` value, the first one.
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit has no {key}="))
        .to_string()
}

#[test]
fn the_systemd_unit_verifies_and_its_exec_start_is_a_type_notify_agent() {
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/steward.service")).unwrap();
    for (key, value) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("Delegate", "yes"),
        ("KillMode", "mixed"),
    ] {
        assert_eq!(unit_value(&unit, key), value, "{key}");
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("steward.toml");
    let here = |line: &str| {
        line.replace("/usr/local/bin/steward", BIN)
            .replace("/etc/steward/steward.toml", config.to_str().unwrap())
            .replace("/var/lib/steward", state.to_str().unwrap())
    };
    let local_unit = dir.path().join("steward.service");
    std::fs::write(&local_unit, here(&unit)).unwrap();
    let analyze = tool("systemd-analyze", "apt-get install systemd");
    let verify = Command::new(analyze)
        .arg("verify")
        .arg(&local_unit)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", stderr(&verify));
    assert!(
        stderr(&verify).trim().is_empty(),
        "warnings: {}",
        stderr(&verify)
    );

    // ExecStart as systemd runs it: in the foreground, with a NOTIFY_SOCKET.
    std::fs::write(
        &config,
        "[services.web]\ncommand = [\"sleep\", \"1000\"]\nhealth = { exec = [\"true\"], interval = \"1s\", start_interval = \"50ms\" }\n",
    )
    .unwrap();
    let sock_path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let argv: Vec<String> = here(&unit_value(&unit, "ExecStart"))
        .split_whitespace()
        .map(String::from)
        .collect();
    let tag = format!("deploy-{}", std::process::id());
    let mut agent = Command::new(&argv[0])
        .args(&argv[1..])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("STEWARD_TEST_TAG", &tag)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(agent.id(), tag);
    let deadline = Instant::now() + LONG;
    let mut buf = [0u8; 4096];
    let mut ready = false;
    while !ready && Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            ready = String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1");
        }
    }
    assert!(ready, "no READY=1 from ExecStart");

    let reload: Vec<String> = here(&unit_value(&unit, "ExecReload"))
        .split_whitespace()
        .map(String::from)
        .collect();
    let out = Command::new(&reload[0])
        .args(&reload[1..])
        .output()
        .unwrap();
    assert!(out.status.success(), "ExecReload: {}", stderr(&out));

    // KillMode=mixed: SIGTERM to the agent alone; it stops its services and exits 0.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_until("the agent to exit on SIGTERM", LONG, || {
        agent.try_wait().unwrap().is_some()
    });
    assert!(agent.wait().unwrap().success());
    drop(guard);
}

struct KillOnDrop(u32, String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0 as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        kill_tagged(&self.1);
    }
}

const MANIFESTS: [&str; 2] = [
    "deploy/kubernetes/daemonset.yaml",
    "deploy/kubernetes/pod.yaml",
];

#[test]
fn the_kubernetes_manifests_validate_against_a_current_schema() {
    let have = Command::new("python3")
        .args(["-c", "import kubernetes_validate"])
        .status()
        .unwrap();
    assert!(
        have.success(),
        "kubernetes-validate is missing: pip install kubernetes-validate (scripts/test does)"
    );
    for manifest in MANIFESTS {
        let out = Command::new("python3")
            .args(["-m", "kubernetes_validate", "--strict"])
            .arg(repo().join(manifest))
            .output()
            .unwrap();
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(out.status.success(), "{manifest}: {said}");
        assert!(said.contains("passed"), "{manifest}: {said}");
        assert!(!said.contains("WARN"), "{manifest}: {said}");
    }
}

/// The steward.toml of the manifest's ConfigMap (PyYAML comes with kubernetes-validate).
fn config_in(manifest: &str) -> Vec<u8> {
    let extract = Command::new("python3")
        .arg("-c")
        .arg("import sys, yaml\nfor d in yaml.safe_load_all(open(sys.argv[1])):\n    if d['kind'] == 'ConfigMap': sys.stdout.write(d['data']['steward.toml'])")
        .arg(repo().join(manifest))
        .output()
        .unwrap();
    assert!(extract.status.success(), "{manifest}: {}", stderr(&extract));
    extract.stdout
}

#[test]
fn the_configs_inside_the_kubernetes_manifests_pass_config_check() {
    let dir = tempfile::tempdir().unwrap();
    for manifest in MANIFESTS {
        std::fs::write(dir.path().join("steward.toml"), config_in(manifest)).unwrap();
        let out = Command::new(BIN)
            .args(["config", "check", "--no-host", "steward.toml"])
            .current_dir(dir.path())
            .env("NODE_NAME", "gpu-node-1")
            .env(
                "STEWARD_QUEUE_URL",
                "postgresql://steward:secret@db.internal/steward",
            )
            .output()
            .unwrap();
        assert!(out.status.success(), "{manifest}: {}", stderr(&out));
        assert!(!stdout(&out).contains("secret"), "{}", stdout(&out));
    }
    // The DaemonSet's node name comes from the downward API: without it, it is refused.
    let daemonset = dir.path().join("daemonset.toml");
    std::fs::write(&daemonset, config_in(MANIFESTS[0])).unwrap();
    let out = Command::new(BIN)
        .args(["config", "check", "--no-host"])
        .arg(&daemonset)
        .env_remove("NODE_NAME")
        .env(
            "STEWARD_QUEUE_URL",
            "postgresql://steward@db.internal/steward",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("node.name: env:NODE_NAME is not set"),
        "{}",
        stderr(&out)
    );
}
