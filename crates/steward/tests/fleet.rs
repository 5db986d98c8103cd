//! Many nodes on one PostgreSQL queue: real agents (each with its own state dir and node
//! name) against a throwaway cluster on this machine. A node SIGKILLed mid-run, the
//! database restarted mid-run, the database away at start, a node paused past its lease,
//! and two agents with one name.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use steward_pgtest::Cluster;

/// One agent of the fleet: its folder, its process, the tag its processes carry.
struct Node {
    name: String,
    dir: PathBuf,
    child: Option<Child>,
    tag: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        kill_tagged(&self.tag);
    }
}

impl Node {
    /// Writes `<root>/<name>/steward.toml`: the node, the shared queue, and `body`.
    fn new(root: &Path, name: &str, url: &str, body: &str) -> Node {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("steward.toml"),
            format!(
                "[node]\nname = \"{name}\"\nheartbeat = \"200ms\"\nttl = \"2s\"\n[queue]\nurl = \"{url}\"\n{body}"
            ),
        )
        .unwrap();
        Node {
            name: name.into(),
            dir,
            child: None,
            tag: format!("fleet-{}-{name}-{}", std::process::id(), fastrand_u32()),
        }
    }

    /// Starts `steward <args…> -f steward.toml` in the node's folder.
    fn spawn(&mut self, args: &[&str]) {
        let log = std::fs::File::create(self.dir.join("agent.log")).unwrap();
        self.child = Some(
            Command::new(BIN)
                .args(args)
                .args(["-f", "steward.toml"])
                .current_dir(&self.dir)
                .env("STEWARD_TEST_TAG", &self.tag)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut full = args.to_vec();
        full.extend(["-f", "steward.toml"]);
        steward(&full, &self.dir)
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cli(args);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{args:?}: {}{}", stdout(&out), stderr(&out)))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits (polling, up to six long waits: 10,000 jobs on 2 cores) for the agent's run
    /// until empty to end, and asserts it ended well.
    fn finishes_ok(&mut self) {
        let deadline = Instant::now() + LONG * 6;
        let status = loop {
            if let Some(s) = self.exited() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "{} never finished:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{}:\n{}", self.name, self.log());
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }
}

fn fastrand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

fn counts(node: &Node) -> serde_json::Value {
    node.json(&["queue", "stats", "--json"])["counts"].clone()
}

fn write_inputs(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        std::fs::write(dir.join(format!("{i:05}.txt")), format!("job {i}\n")).unwrap();
    }
}

const COPY: &str = r#"
[pipelines.copy]
command = ["cp", "{input}", "{output_dir}/{name}"]
output_dir = "../out"
expect_output = "{output_dir}/{name}"
replicas = 2
max_attempts = 10
backoff = { initial = "10ms", max = "10ms" }
"#;

#[test]
fn three_nodes_share_a_queue_and_a_sigkilled_nodes_jobs_are_rescued_within_its_ttl() {
    const JOBS: usize = 10_000;
    let cluster = Cluster::start(false);
    let url = cluster.url(&cluster.create_db());
    let root = tempfile::tempdir().unwrap();
    write_inputs(&root.path().join("in"), JOBS);
    std::fs::create_dir(root.path().join("out")).unwrap();
    let mut nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| Node::new(root.path(), n, &url, COPY))
        .collect();
    let add = nodes[0].cli(&["queue", "add", "copy", "../in"]);
    assert!(add.status.success(), "{}", stderr(&add));
    for n in &mut nodes {
        n.spawn(&["run", "--until-empty"]);
    }
    wait_until("3 nodes alive, one of them leading", LONG, || {
        let fleet = nodes[0].json(&["nodes", "--json"]);
        let rows = fleet.as_array().unwrap();
        rows.iter().filter(|r| r["alive"] == true).count() == 3
            && rows.iter().filter(|r| r["leader"] == true).count() == 1
    });
    wait_until("a third of the jobs done", LONG * 4, || {
        counts(&nodes[1])["succeeded"].as_u64().unwrap_or(0) >= (JOBS / 3) as u64
    });
    let victim = nodes[0].child.as_mut().unwrap();
    victim.kill().unwrap();
    victim.wait().unwrap();
    let killed = Instant::now();
    // Its slots' jobs stay "running" until the leader sees it dead and takes them back.
    wait_until("n1 to be dead with nothing running", LONG, || {
        let fleet = nodes[1].json(&["nodes", "--json"]);
        fleet
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "n1" && r["alive"] == false && r["jobs_running"] == 0)
    });
    let rescued_in = killed.elapsed();
    eprintln!("n1's jobs were rescued {rescued_in:.2?} after the SIGKILL (node ttl 2 s)");
    assert!(
        rescued_in < Duration::from_secs(2) + Duration::from_secs(8),
        "rescue took {rescued_in:?}"
    );
    for n in &mut nodes[1..] {
        n.finishes_ok();
    }
    let c = counts(&nodes[1]);
    assert_eq!(c["succeeded"], JOBS as u64, "{c}");
    assert_eq!(
        std::fs::read_dir(root.path().join("out")).unwrap().count(),
        JOBS
    );
    let jobs = nodes[1].json(&["queue", "ls", "--json", "--limit", "20000"]);
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), JOBS);
    let repeated = jobs
        .iter()
        .filter(|j| j["attempts"].as_u64().unwrap() > 1)
        .count();
    eprintln!("{repeated} job(s) ran twice (n1 had 2 slots in flight)");
    assert!(
        repeated <= 2,
        "{repeated} jobs ran again; only n1's 2 in flight may"
    );
    let fleet = nodes[1].json(&["nodes", "--json"]);
    let state = |name: &str| {
        let r = fleet
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone();
        (
            r["alive"].as_bool().unwrap(),
            r["stopped"].as_bool().unwrap(),
        )
    };
    assert_eq!(state("n1"), (false, false), "dead: {fleet}");
    assert_eq!(state("n2"), (false, true), "left when done: {fleet}");
    let text = stdout(&nodes[1].cli(&["nodes"]));
    assert!(
        text.contains("n1") && text.contains("dead") && text.contains("0 of 3 node(s) alive"),
        "{text}"
    );
}

#[test]
fn a_database_restart_mid_run_loses_no_job_and_services_keep_running() {
    const JOBS: usize = 1_500;
    let cluster = Cluster::start(false);
    let url = cluster.url(&cluster.create_db());
    let root = tempfile::tempdir().unwrap();
    write_inputs(&root.path().join("in"), JOBS);
    std::fs::create_dir(root.path().join("out")).unwrap();
    let body = format!("[services.keep]\ncommand = [\"sleep\", \"1000\"]\n{COPY}");
    let mut nodes: Vec<Node> = ["a", "b"]
        .iter()
        .map(|n| Node::new(root.path(), n, &url, &body))
        .collect();
    assert!(nodes[0]
        .cli(&["queue", "add", "copy", "../in"])
        .status
        .success());
    for n in &mut nodes {
        n.spawn(&["run", "--until-empty"]);
    }
    let keep_pid = |n: &Node| {
        let ps = n.json(&["ps", "--json"]);
        ps["services"][0]["pid"].as_u64()
    };
    wait_until("work under way", LONG * 2, || {
        counts(&nodes[0])["succeeded"].as_u64().unwrap_or(0) >= 300 && keep_pid(&nodes[0]).is_some()
    });
    let before = keep_pid(&nodes[0]);
    cluster.restart_fast();
    assert_eq!(keep_pid(&nodes[0]), before, "the service was not touched");
    for n in &mut nodes {
        n.finishes_ok();
    }
    assert_eq!(counts(&nodes[0])["succeeded"], JOBS as u64);
    assert_eq!(
        std::fs::read_dir(root.path().join("out")).unwrap().count(),
        JOBS
    );
}

#[test]
fn a_database_away_at_start_is_said_and_the_pipelines_start_once_it_answers() {
    let cluster = Cluster::start(false);
    let db = cluster.create_db();
    let url = cluster.url(&db);
    cluster.stop();
    let root = tempfile::tempdir().unwrap();
    write_inputs(&root.path().join("in"), 3);
    std::fs::create_dir(root.path().join("out")).unwrap();
    let body = format!("[services.web]\ncommand = [\"sleep\", \"1000\"]\n{COPY}");
    let mut node = Node::new(root.path(), "n1", &url, &body);
    node.spawn(&["up"]);
    wait_until("the service to run without the queue", LONG, || {
        node.cli(&["ps", "--json"]).status.success()
            && node.json(&["ps", "--json"])["services"][0]["state"] == "running"
    });
    wait_until("the agent to say the queue is away", LONG, || {
        node.log()
            .contains("cannot reach postgresql://steward:***@127.0.0.1")
    });
    assert!(
        !node.log().contains(cluster.password()),
        "the password is never printed:\n{}",
        node.log()
    );
    cluster.start_again();
    assert!(node
        .cli(&["queue", "add", "copy", "../in"])
        .status
        .success());
    wait_until(
        "the pipelines to start and finish the jobs",
        LONG * 2,
        || counts(&node)["succeeded"] == 3,
    );
    assert!(
        node.log().contains("the queue answers again"),
        "{}",
        node.log()
    );
    assert!(node.cli(&["down"]).status.success());

    // Asked to exit instead: `up` says why and exits non-zero.
    let dead = format!(
        "postgresql://steward:secret@127.0.0.1:{}/x",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let strict = Node::new(
        root.path(),
        "n2",
        &dead,
        &format!("on_unreachable = \"exit\"\n{COPY}"),
    );
    let out = strict.cli(&["up"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("on_unreachable = \"exit\"") && err.contains("cannot reach"),
        "{err}"
    );
    assert!(
        !err.contains("secret") && err.contains("steward:***@"),
        "{err}"
    );
}

#[test]
fn a_node_paused_past_its_lease_cannot_complete_the_job_another_node_took() {
    let cluster = Cluster::start(false);
    let url = cluster.url(&cluster.create_db());
    let root = tempfile::tempdir().unwrap();
    write_inputs(&root.path().join("in"), 1);
    std::fs::create_dir(root.path().join("out")).unwrap();
    let slow = r#"
[pipelines.copy]
command = ["sh", "-c", "sleep 3; cp \"$0\" \"$1\"", "{input}", "{output_dir}/{name}"]
output_dir = "../out"
expect_output = "{output_dir}/{name}"
max_attempts = 5
backoff = { initial = "10ms", max = "10ms" }
"#;
    let mut a = Node::new(root.path(), "a", &url, slow);
    let mut b = Node::new(root.path(), "b", &url, slow);
    assert!(a.cli(&["queue", "add", "copy", "../in"]).status.success());
    a.spawn(&["up"]);
    let owner = |n: &Node| {
        let jobs = n.json(&["queue", "ls", "--json"]);
        jobs[0]["lease_owner"].as_str().unwrap_or("").to_string()
    };
    wait_until("a to hold the job", LONG, || owner(&a).starts_with("a/"));
    b.spawn(&["up"]);
    // SAFETY: signalling a child we started.
    unsafe { libc::kill(a.pid() as i32, libc::SIGSTOP) };
    wait_until("b to take the job over", LONG, || {
        owner(&b).starts_with("b/")
    });
    unsafe { libc::kill(a.pid() as i32, libc::SIGCONT) };
    wait_until("a's late completion to be refused", LONG, || {
        a.log().contains("completion is refused")
    });
    wait_until("b to finish the job", LONG, || counts(&b)["succeeded"] == 1);
    let show = b.json(&["queue", "show", "1", "--json"]);
    assert_eq!(show["job"]["attempts"], 2, "{show}");
    assert_eq!(
        show["attempts"][0]["class"]["class"], "lease_expired",
        "{show}"
    );
    assert!(
        show["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("whose agent is gone"),
        "{show}"
    );
    let c = counts(&b);
    assert_eq!(
        (c["succeeded"].as_u64(), c["running"].as_u64()),
        (Some(1), Some(0))
    );
    for n in [&a, &b] {
        assert!(n.cli(&["down"]).status.success());
    }
}

#[test]
fn a_second_agent_with_the_same_node_name_is_refused_naming_the_first() {
    let cluster = steward_pgtest::shared();
    let url = cluster.url(&cluster.create_db());
    let root = tempfile::tempdir().unwrap();
    let body = "[services.s]\ncommand = [\"sleep\", \"1000\"]\n";
    let mut first = Node::new(root.path(), "gpu-1", &url, body);
    first.spawn(&["up"]);
    wait_until("the first to join", LONG, || {
        first.cli(&["nodes", "--json"]).status.success()
            && first.json(&["nodes", "--json"])[0]["alive"] == true
    });
    let second_dir = root.path().join("elsewhere");
    let second = Node::new(&second_dir, "gpu-1", &url, body);
    let out = second.cli(&["up"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "node name \"gpu-1\" is taken by a live agent (pid {} on host {}",
            first.pid(),
            steward_config_hostname()
        )),
        "{err}"
    );
    // The first is unharmed.
    assert_eq!(
        first.json(&["ps", "--json"])["services"][0]["state"],
        "running"
    );
    assert!(first.cli(&["down"]).status.success());
}

fn steward_config_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}
