//! Test harness: runs the real `steward` binary against real processes in a temp dir, and
//! kills everything it started even when a test fails.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

pub mod http;
#[allow(unused_imports)]
pub use http::{get, http, post, try_http, HttpReply};
pub const BIN: &str = env!("CARGO_BIN_EXE_steward");

/// Polls `cond` every 20 ms until it holds; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Generous, because CI is a noisy 2-core machine; a passing test never waits this long.
pub const LONG: Duration = Duration::from_secs(30);

pub fn steward(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run steward")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A unique tag every process of one test inherits, for the clean-up sweep.
fn new_tag() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Kills every process whose environment holds `STEWARD_TEST_TAG=tag`.
pub fn kill_tagged(tag: &str) {
    let wanted = format!("STEWARD_TEST_TAG={tag}");
    for _ in 0..3 {
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return;
        };
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) {
                if env.split(|&b| b == 0).any(|kv| kv == wanted.as_bytes()) {
                    // SAFETY: kill has no memory preconditions.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }
}

pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next())
                != Some('Z')
        }
        Err(_) => false,
    }
}

/// A running agent in its own temp dir.
pub struct Agent {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub child: Option<Child>,
    pub tag: String,
    /// Extra environment for the agent (and so for its services).
    pub env: Vec<(String, String)>,
    pub up_args: Vec<String>,
}

impl Agent {
    /// Writes `toml` as `steward.toml` and starts `steward up` on it; waits until it answers.
    pub fn start(toml: &str) -> Agent {
        let agent = Agent::prepare(toml);
        agent.launch(&[])
    }

    pub fn prepare(toml: &str) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("steward.toml");
        std::fs::write(&config, toml).expect("write config");
        Agent {
            dir,
            config,
            child: None,
            tag: new_tag(),
            env: Vec::new(),
            up_args: Vec::new(),
        }
    }

    /// Starts the agent with extra `up` arguments (`--force`).
    pub fn launch_args(mut self, extra: &[&str]) -> Agent {
        self.up_args = extra.iter().map(|s| s.to_string()).collect();
        self.launch(&[])
    }

    /// Starts the agent, optionally wrapped (`unshare --pid --fork`, `setpriv`).
    pub fn launch(mut self, wrapper: &[&str]) -> Agent {
        let (program, mut args): (&str, Vec<String>) = match wrapper.split_first() {
            Some((p, rest)) => (p, rest.iter().map(|s| s.to_string()).collect()),
            None => (BIN, vec![]),
        };
        if !wrapper.is_empty() {
            args.push(BIN.into());
        }
        args.extend(["up".into(), "-f".into(), self.config.display().to_string()]);
        args.extend(self.up_args.iter().cloned());
        let log = std::fs::File::create(self.dir.path().join("agent.out")).unwrap();
        let child = Command::new(program)
            .args(&args)
            .current_dir(self.dir.path())
            .env("STEWARD_TEST_TAG", &self.tag)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn steward up");
        self.child = Some(child);
        let deadline = Instant::now() + LONG;
        loop {
            let out = self.cli(&["ps", "--json"]);
            if out.status.success() {
                break;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("agent exited early ({status}):\n{}", self.agent_log());
            }
            assert!(
                Instant::now() < deadline,
                "agent never answered:\n{}",
                self.agent_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self
    }

    pub fn with_env(mut self, key: &str, value: &str) -> Agent {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join(".steward")
    }

    /// The id naming this agent's cgroups (`steward-<id>`), as `ps` reports them.
    pub fn state_dir_agent_id(&self) -> String {
        let cgroups = self.ps()["agent"]["cgroups"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let id = cgroups.rsplit("steward-").next().unwrap_or("");
        assert!(
            cgroups.contains("steward-") && !id.is_empty(),
            "no cgroup id in {cgroups:?}"
        );
        id.split('/').next().unwrap_or("").to_string()
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.out")).unwrap_or_default()
    }

    /// Runs a CLI command against this agent's config.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut full: Vec<&str> = args.to_vec();
        let config = self.config.display().to_string();
        if !matches!(args.first(), Some(&"logs")) {
            full.extend(["-f", &config]);
        } else {
            full.extend(["--file", &config]);
        }
        Command::new(BIN)
            .args(&full)
            .current_dir(self.dir.path())
            .output()
            .expect("run steward")
    }

    pub fn ps(&self) -> Value {
        let out = self.cli(&["ps", "--json"]);
        assert!(out.status.success(), "ps failed: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("ps --json is JSON")
    }

    pub fn service(&self, name: &str) -> Value {
        self.ps()["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no service {name} in ps"))
    }

    /// Waits until `name` is running, then returns its status.
    pub fn running(&self, name: &str) -> Value {
        self.wait_for(&format!("{name} to run"), |a| {
            a.service(name)["state"] == "running"
        });
        self.service(name)
    }

    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.state_dir().join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The timestamp of an event, as a time.
    pub fn ts(event: &Value) -> std::time::SystemTime {
        humantime::parse_rfc3339(event["ts"].as_str().expect("ts")).expect("rfc3339 ts")
    }

    pub fn events_of(&self, service: &str, kind: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["service"] == service && e["event"] == kind)
            .collect()
    }

    pub fn wait_for(&self, what: &str, mut cond: impl FnMut(&Agent) -> bool) {
        wait_until(what, LONG, || cond(self));
    }

    /// `steward down`, then waits for the agent to exit; returns its exit status.
    pub fn down(&mut self) -> std::process::ExitStatus {
        let out = self.cli(&["down"]);
        assert!(
            out.status.success(),
            "down failed: {}\n{}",
            stderr(&out),
            self.agent_log()
        );
        let mut child = self.child.take().expect("agent running");
        let deadline = Instant::now() + LONG;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "agent did not exit after down");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = self.cli(&["down"]);
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        kill_tagged(&self.tag);
    }
}

/// Whether this machine lets us create memory cgroups (root on cgroup v1 here). Tests that
/// need it fail loudly without it, unless STEWARD_SKIP_CGROUP_TESTS=1 says to skip.
pub fn require_cgroups(test: &str) -> bool {
    let writable = nix_is_root() && Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists()
        || Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if writable {
        return true;
    }
    if std::env::var("STEWARD_SKIP_CGROUP_TESTS").as_deref() == Ok("1") {
        eprintln!("{test}: skipped, no writable memory cgroup (STEWARD_SKIP_CGROUP_TESTS=1)");
        return false;
    }
    panic!("{test} needs a writable memory cgroup (root on cgroup v1 or a delegated v2); set STEWARD_SKIP_CGROUP_TESTS=1 to skip");
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A port that was free a moment ago (the OS picked it); the caller binds it next.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A small tmpfs mounted for one test (as root), unmounted when dropped, even on failure.
pub struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// `options` as for `mount -o`: `size=8m`, `size=1m,ro`.
    pub fn mount(at: &std::path::Path, options: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(ok.success(), "this test mounts a tmpfs (as root)");
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes `n` small inputs, `doc-00000.txt`…, into `dir`.
pub fn write_inputs(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        std::fs::write(
            dir.join(format!("doc-{i:05}.txt")),
            format!("document {i}\n"),
        )
        .unwrap();
    }
}

/// `steward run -f steward.toml --until-empty` in `dir`.
pub fn run_until_empty(dir: &Path) -> std::process::Output {
    steward(&["run", "-f", "steward.toml", "--until-empty"], dir)
}

/// `steward queue -f steward.toml ARGS…` in `dir`.
pub fn queue_cli(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut full = vec!["queue", "-f", "steward.toml"];
    full.extend_from_slice(args);
    steward(&full, dir)
}

/// Where `program` is on PATH, if it is.
pub fn which(program: &str) -> Option<String> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// (start, healthy) of each instance's first run, from the events.
pub fn windows(agent: &Agent, names: &[&str]) -> Vec<(String, u64, SystemTime, SystemTime)> {
    names
        .iter()
        .map(|n| {
            let started = &agent.events_of(n, "started")[0];
            let healthy = agent
                .events_of(n, "health")
                .into_iter()
                .find(|e| e["state"] == "healthy")
                .unwrap_or_else(|| panic!("{n} never healthy"));
            (
                n.to_string(),
                started["gpu"].as_u64().unwrap(),
                Agent::ts(started),
                Agent::ts(&healthy),
            )
        })
        .collect()
}
