//! The supervisor, end to end: the real binary, real processes, real cgroups.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn cgroup_oom_kill_is_classified_with_limit_and_peak() {
    if !require_cgroups("cgroup_oom_kill_is_classified_with_limit_and_peak") {
        return;
    }
    // Grows by 8 MiB steps until the kernel kills it at 64 MiB.
    let agent = Agent::start(
        r#"
[services.hog]
command = ["python3", "-c", "import time\nx=[]\nwhile True:\n    x.append(bytearray(8<<20)); time.sleep(0.01)"]
memory = "64MiB"
restart = "never"
"#,
    );
    agent.wait_for("hog to fail", |a| a.service("hog")["state"] == "failed");
    let svc = agent.service("hog");
    let exit = &svc["last_exit"];
    assert_eq!(exit["class"], "oom_killed", "{svc}");
    assert_eq!(exit["source"], "kernel");
    assert_eq!(exit["limit"], 64u64 << 20);
    let peak = exit["peak"].as_u64().expect("peak recorded");
    assert!(
        peak > 48 << 20 && peak <= 64 << 20,
        "peak {peak} should be near the 64 MiB limit"
    );
    // The exit's event is written once its explanation is read, beside the state change.
    agent.wait_for("hog's exit event", |a| {
        !a.events_of("hog", "exited").is_empty()
    });
    let exits = agent.events_of("hog", "exited");
    assert_eq!(exits.last().unwrap()["class"], "oom_killed");
    // Where the kernel log is readable, explain sees the kernel's own OOM line.
    if std::fs::File::open("/dev/kmsg").is_ok() {
        let why = exits.last().unwrap()["explain"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(why.starts_with("cgroup-oom: "), "{why}");
    }
}

#[test]
fn restart_backoff_doubles_then_crash_loop_is_declared() {
    let agent = Agent::start(
        r#"
[services.flaky]
command = ["sh", "-c", "exit 3"]
backoff = { initial = "100ms", max = "400ms", jitter = 0.0 }
crash_loop = { exits = 4, window = "1m" }
"#,
    );
    agent.wait_for("a crash loop", |a| {
        !a.events_of("flaky", "crash_loop").is_empty()
    });
    let delays: Vec<u64> = agent
        .events_of("flaky", "restarting")
        .iter()
        .map(|e| e["delay_ms"].as_u64().unwrap())
        .collect();
    // The fifth exit makes it a crash loop: from then on the max backoff, but never less
    // than the crash-loop floor of a second.
    assert_eq!(
        &delays[..5],
        &[100, 200, 400, 400, 1000],
        "delays: {delays:?}"
    );
    let crash = &agent.events_of("flaky", "crash_loop")[0];
    assert_eq!(crash["exits"], 5);
    assert_eq!(crash["last"][0]["class"], "exited");
    assert_eq!(crash["last"][0]["code"], 3);

    // The gaps between starts are never shorter than the delays (never spun).
    let starts: Vec<std::time::SystemTime> = agent
        .events_of("flaky", "started")
        .iter()
        .map(|e| humantime::parse_rfc3339(e["ts"].as_str().unwrap()).unwrap())
        .collect();
    for (i, pair) in starts.windows(2).take(4).enumerate() {
        let gap = pair[1].duration_since(pair[0]).unwrap();
        assert!(
            gap >= Duration::from_millis(delays[i]),
            "start {i}: gap {gap:?} < delay {}",
            delays[i]
        );
    }
    agent.wait_for("ps to say crash-loop", |a| {
        a.service("flaky")["state"] == "crash-loop"
    });
    let svc = agent.service("flaky");
    assert!(svc["recent_exits"].as_array().unwrap().len() >= 4, "{svc}");
}

#[test]
fn a_daemonised_grandchild_does_not_survive_down() {
    let mut agent = Agent::start(
        r#"
[services.forker]
# The grandchild leaves the process group and the session (setsid), as a daemon does.
command = "setsid sh -c 'echo $$ > grandchild.pid; exec sleep 1000' & exec sleep 1000"
shell = true
"#,
    );
    let pidfile = agent.path().join("grandchild.pid");
    wait_until("the grandchild to write its pid", LONG, || {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
    });
    let grandchild: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let main_pid = agent.running("forker")["pid"].as_u64().unwrap() as u32;
    assert!(pid_alive(grandchild) && pid_alive(main_pid));
    let status = agent.down();
    assert!(status.success(), "agent exit: {status}");
    assert!(!pid_alive(main_pid), "main process survived down");
    assert!(
        !pid_alive(grandchild),
        "daemonised grandchild {grandchild} survived down"
    );
}

#[test]
fn processes_get_no_core_dumps_their_oom_score_adj_and_cpus() {
    let agent = Agent::start(
        r#"
[services.pinned]
command = ["sleep", "1000"]
cpus = "0"
oom_score_adj = 321

[services.dumper]
command = ["sleep", "1000"]
core_dumps = true
"#,
    );
    agent.wait_for("both running", |a| {
        a.service("pinned")["state"] == "running" && a.service("dumper")["state"] == "running"
    });
    let pid = agent.service("pinned")["pid"].as_u64().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");
    assert_eq!(core.split_whitespace().nth(5), Some("0"), "{core}");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
            .unwrap()
            .trim(),
        "321"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let cpus = status
        .lines()
        .find(|l| l.starts_with("Cpus_allowed_list"))
        .unwrap();
    assert_eq!(cpus.split_whitespace().nth(1), Some("0"), "{cpus}");

    let pid = agent.service("dumper")["pid"].as_u64().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_ne!(
        core.split_whitespace().nth(4),
        Some("0"),
        "core_dumps = true must raise the limit: {core}"
    );
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
            .unwrap()
            .trim(),
        "500",
        "default"
    );
}

#[test]
fn logs_rotate_by_size_and_tail_reads_across_files() {
    let agent = Agent::start(
        r#"
[services.chatty]
command = "i=0; while [ $i -lt 400 ]; do echo \"line $i padding-padding-padding\"; i=$((i+1)); done; echo done >&2; exec sleep 1000"
shell = true
log = { max_size = "4KiB", keep = 2 }
"#,
    );
    let logs = agent.state_dir().join("logs/chatty");
    wait_until("the last line in the log", LONG, || {
        std::fs::read_to_string(logs.join("output.log")).is_ok_and(|s| s.contains("done"))
    });
    assert!(logs.join("output.log.1").exists());
    assert!(logs.join("output.log.2").exists());
    assert!(
        !logs.join("output.log.3").exists(),
        "keep = 2 keeps two old files"
    );
    for f in ["output.log", "output.log.1", "output.log.2"] {
        let len = std::fs::metadata(logs.join(f)).unwrap().len();
        assert!(len <= 4096, "{f} is {len} bytes, over max_size");
    }
    let out = agent.cli(&["logs", "chatty", "--tail", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "line 398 padding-padding-padding\nline 399 padding-padding-padding\ndone\n",
        "stdout and stderr share one ordered log"
    );
}

#[test]
fn stop_escalates_to_sigkill_and_start_restart_work() {
    let agent = Agent::start(
        r#"
[services.stubborn]
command = "trap '' TERM; echo ready; while true; do sleep 0.05; done"
shell = true
stop_timeout = "300ms"
"#,
    );
    agent.wait_for("running", |a| a.service("stubborn")["state"] == "running");
    let pid = agent.service("stubborn")["pid"].as_u64().unwrap() as u32;
    let out = agent.cli(&["stop", "stubborn"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!pid_alive(pid), "stop returned while the process lived");
    let svc = agent.service("stubborn");
    assert_eq!(svc["state"], "stopped");
    assert_eq!(svc["last_exit"]["class"], "stopped");

    let out = agent.cli(&["start", "stubborn"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let new_pid = agent.service("stubborn")["pid"].as_u64().unwrap() as u32;
    assert_ne!(new_pid, pid);
    let out = agent.cli(&["restart", "stubborn"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let svc = agent.service("stubborn");
    assert_ne!(svc["pid"].as_u64().unwrap() as u32, new_pid);
    assert_eq!(svc["restarts"], 1);

    let out = agent.cli(&["restart", "nosuch"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no service named \"nosuch\"; this config has: stubborn"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn strays_left_by_a_crashed_main_process_are_killed_before_the_restart() {
    let agent = Agent::start(
        r#"
[services.leaky]
command = "setsid sleep 1000 & sleep 0.2; exit 1"
shell = true
backoff = { initial = "5s", max = "5s" }
"#,
    );
    agent.wait_for("a stray_killed event", |a| {
        !a.events_of("leaky", "stray_killed").is_empty()
    });
    let ev = &agent.events_of("leaky", "stray_killed")[0];
    let stray = ev["pids"][0].as_u64().unwrap() as u32;
    assert!(!pid_alive(stray), "stray {stray} still alive");
}

#[test]
fn planned_cpus_become_affinity_and_a_cpuset_group() {
    if !require_cgroups("planned_cpus_become_affinity_and_a_cpuset_group") {
        return;
    }
    let agent =
        Agent::start("[services.pinned]\ncommand = [\"sleep\", \"1000\"]\ncpus_per_replica = 1\n");
    let pid = agent.running("pinned")["pid"].as_u64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let allowed = status
        .lines()
        .find(|l| l.starts_with("Cpus_allowed_list"))
        .unwrap();
    assert_eq!(
        allowed.split_whitespace().nth(1),
        Some("0"),
        "the plan gives the first free core: {allowed}"
    );
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let cpuset = cgroups
        .lines()
        .find_map(|l| l.split_once(":cpuset:").map(|(_, p)| p.to_string()));
    if let Some(path) = cpuset.filter(|p| p.contains("steward-")) {
        let cpus =
            std::fs::read_to_string(format!("/sys/fs/cgroup/cpuset{path}/cpuset.cpus")).unwrap();
        assert_eq!(cpus.trim(), "0");
    } else if std::path::Path::new("/sys/fs/cgroup/cpuset/cgroup.procs").exists() {
        panic!("the v1 cpuset hierarchy is mounted but the process is not in a steward cpuset group: {cgroups}");
    }
}

#[test]
fn a_crash_is_explained_in_its_event_and_in_ps() {
    let agent = Agent::start(
        r#"
[services.trainer]
command = '''echo "epoch 1"; echo "The value of the smallest subnormal for <class 'numpy.float64'> type is zero." >&2; echo "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB." >&2; exit 1'''
shell = true
restart = "never"
"#,
    );
    agent.wait_for("trainer's exit event", |a| {
        a.service("trainer")["state"] == "failed" && !a.events_of("trainer", "exited").is_empty()
    });
    let exited = agent.events_of("trainer", "exited");
    let why = exited[0]["explain"]
        .as_str()
        .expect("an explanation in the exit event");
    assert!(
        why.starts_with("cuda-oom: torch.OutOfMemoryError: CUDA out of memory"),
        "{why}"
    );
    let svc = agent.service("trainer");
    assert_eq!(svc["last_explain"].as_str(), Some(why));
    assert!(
        stdout(&agent.cli(&["ps"])).contains("trainer: failed: cuda-oom:"),
        "{}",
        stdout(&agent.cli(&["ps"]))
    );
}

#[test]
fn a_worker_crash_looping_on_an_uncaught_python_exception_is_explained_in_ps() {
    let agent = Agent::start(
        r#"
[services.worker]
command = ["python3", "-c", "import json\nprint('loading')\ncfg = json.load(open('config.json'))"]
backoff = { initial = "1s", max = "1s" }
"#,
    );
    agent.wait_for("a second crash", |a| {
        a.events_of("worker", "exited").len() >= 2
    });
    let why = agent.service("worker")["last_explain"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        why.starts_with("python-exception: FileNotFoundError: [Errno 2] No such file or directory: 'config.json'"),
        "{why}"
    );
    let ps = stdout(&agent.cli(&["ps"]));
    assert!(ps.contains("worker: "), "{ps}");
    assert!(ps.contains("python-exception: FileNotFoundError"), "{ps}");
}

#[test]
fn a_deleted_log_file_is_made_again_while_the_service_runs_and_across_a_restart() {
    let agent = Agent::start(
        "[services.talker]\ncommand = \"while true; do echo line; sleep 0.05; done\"\nshell = true\n",
    );
    agent.running("talker");
    let log = agent.state_dir().join("logs/talker/output.log");
    wait_until("the first lines", LONG, || {
        std::fs::metadata(&log).is_ok_and(|m| m.len() > 0)
    });
    std::fs::remove_file(&log).unwrap();
    wait_until("a fresh output.log with new lines", LONG, || {
        std::fs::metadata(&log).is_ok_and(|m| m.len() > 0)
    });
    std::fs::remove_file(&log).unwrap();
    let out = agent.cli(&["restart", "talker"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until("output.log after the restart", LONG, || {
        std::fs::metadata(&log).is_ok_and(|m| m.len() > 0)
    });
}

#[test]
fn a_log_on_a_full_disk_is_said_once_with_one_event_not_hundreds_of_times() {
    let agent = Agent::prepare(
        "[services.chatty]\ncommand = \"while true; do echo a line of chatter that fills the disk; done\"\nshell = true\n",
    );
    let logs = agent.state_dir().join("logs/chatty");
    std::fs::create_dir_all(&logs).unwrap();
    let _fs = Tmpfs::mount(&logs, "size=256k");
    let agent = agent.launch(&[]);
    agent.wait_for("the log_write_failed event", |a| {
        !a.events_of("chatty", "log_write_failed").is_empty()
    });
    // Seconds of failing writes (hundreds a second) later: still one line, one event.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let said = agent.agent_log().matches("cannot write its log").count();
    assert_eq!(said, 1, "one warning:\n{}", agent.agent_log());
    assert_eq!(agent.events_of("chatty", "log_write_failed").len(), 1);
}

#[test]
fn logs_follow_across_rotations_without_losing_a_line() {
    let agent = Agent::start(
        "[services.counter]\ncommand = [\"python3\", \"-u\", \"-c\", \"import time\\ni = 0\\nwhile True:\\n    print(i)\\n    i += 1\\n    time.sleep(0.0025)\\n\"]\nlog = { max_size = \"4KiB\", keep = 5 }\n",
    );
    agent.running("counter");
    let log = agent.state_dir().join("logs/counter/output.log");
    wait_until("the first lines", LONG, || {
        std::fs::metadata(&log).is_ok_and(|m| m.len() > 0)
    });
    let mut follow = std::process::Command::new(BIN)
        .args(["logs", "counter", "-f", "--file"])
        .arg(&agent.config)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rotated = agent.state_dir().join("logs/counter/output.log.3");
    wait_until("three rotations while following", LONG, || rotated.exists());
    let _ = follow.kill();
    let out = follow.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let numbers: Vec<u64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert!(
        numbers.len() > 2000,
        "followed only {} lines",
        numbers.len()
    );
    for pair in numbers.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "a gap while following: {} then {}",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn reload_starts_new_services_stops_removed_ones_restarts_changed_ones_and_refuses_a_bad_config() {
    let agent = Agent::start(
        "[services.keep]\ncommand = [\"sleep\", \"1000\"]\n[services.change]\ncommand = [\"sleep\", \"1000\"]\n[services.drop]\ncommand = [\"sleep\", \"1000\"]\n",
    );
    let pid = |a: &Agent, s: &str| a.running(s)["pid"].as_u64().unwrap();
    let (keep, change, dropped) = (
        pid(&agent, "keep"),
        pid(&agent, "change"),
        pid(&agent, "drop"),
    );
    std::fs::write(
        &agent.config,
        "[services.keep]\ncommand = [\"sleep\", \"1000\"]\n[services.change]\ncommand = [\"sleep\", \"2000\"]\n[services.new]\ncommand = [\"sleep\", \"1000\"]\n",
    )
    .unwrap();
    let out = agent.cli(&["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "reloaded: started new; stopped drop; restarted change; 1 unchanged"
    );
    assert_eq!(
        pid(&agent, "keep"),
        keep,
        "an unchanged service keeps running"
    );
    assert_ne!(pid(&agent, "change"), change, "a changed one runs anew");
    assert!(!pid_alive(dropped as u32), "a removed one is stopped");
    pid(&agent, "new");
    assert!(agent.ps()["services"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["name"] != "drop"));

    // A config that does not check changes nothing, and says why.
    std::fs::write(&agent.config, "[services.keep]\ncommand = [\"pyhton3\"]\n").unwrap();
    let out = agent.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("refused and nothing changed"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("pyhton3"), "{}", stderr(&out));
    assert_eq!(pid(&agent, "keep"), keep);

    // SIGHUP (not a container's init here) reloads too.
    std::fs::write(
        &agent.config,
        "[services.keep]\ncommand = [\"sleep\", \"1000\"]\n[services.change]\ncommand = [\"sleep\", \"2000\"]\n",
    )
    .unwrap();
    // SAFETY: plain kill.
    unsafe { libc::kill(agent.child.as_ref().unwrap().id() as i32, libc::SIGHUP) };
    agent.wait_for("new to be stopped by the reload", |a| {
        a.ps()["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["name"] != "new")
    });
    assert_eq!(pid(&agent, "keep"), keep);
}
