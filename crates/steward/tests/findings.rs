//! Watching what runs: a cause in a running service's output is a finding (an event and a
//! `ps` column) while the process lives; a fatal one restarts it with the finding as the
//! exit's cause, unless `on_fatal_finding = "report"`; noise raises nothing.

mod common;
use common::*;

fn finding(agent: &Agent, service: &str) -> serde_json::Value {
    agent.service(service)["last_finding"].clone()
}

#[test]
fn real_gunicorn_whose_worker_times_out_shows_the_finding_while_it_stays_running() {
    let port = free_port();
    let agent = Agent::prepare(&format!(
        r#"
[services.api]
command = ["python3", "-m", "gunicorn", "--workers", "1", "--timeout", "1", "--graceful-timeout", "1", "--bind", "127.0.0.1:{port}", "app:app"]
"#
    ));
    // Every request takes longer than the worker's timeout.
    std::fs::write(
        agent.path().join("app.py"),
        "import time\ndef app(environ, start_response):\n    time.sleep(30)\n    start_response('200 OK', [])\n    return [b'late']\n",
    )
    .unwrap();
    let agent = agent.launch(&[]);
    agent.running("api");
    wait_until("gunicorn to listen", LONG, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let pid = agent.service("api")["pid"].as_u64();
    // A request that hangs: the arbiter kills its worker after 1 s (WORKER TIMEOUT).
    let client = std::thread::spawn(move || {
        let _ = get(port, "/", &[]);
    });
    wait_until("the gunicorn-worker-timeout finding", LONG, || {
        finding(&agent, "api")["category"] == "gunicorn-worker-timeout"
    });
    let s = agent.service("api");
    assert_eq!(s["state"], "running", "{s}");
    assert_eq!(s["restarts"], 0, "{s}");
    assert_eq!(s["pid"].as_u64(), pid, "the arbiter lives on: {s}");
    assert!(
        s["last_finding"]["line"]
            .as_str()
            .unwrap()
            .contains("WORKER TIMEOUT"),
        "{s}"
    );
    let events = agent.events_of("api", "finding");
    assert_eq!(
        events.len(),
        1,
        "one event for the first, then one a minute: {events:?}"
    );
    let table = stdout(&agent.cli(&["ps"]));
    assert!(table.contains("gunicorn-worker-timeout x"), "{table}");
    drop(client);
}

#[test]
fn a_fatal_cuda_line_restarts_the_service_with_the_finding_as_its_cause_and_numpy_noise_does_not() {
    let port = free_port();
    let agent = Agent::start(&format!(
        r#"
[http]
listen = "127.0.0.1:{port}"

[services.trainer]
command = ["sh", "-c", "echo step 1; echo 'RuntimeError: CUDA error: an illegal memory access was encountered' >&2; exec sleep 1000"]
backoff = {{ initial = "100ms", max = "1s" }}

[services.reporter]
command = ["sh", "-c", "echo 'torch.AcceleratorError: CUDA error: device-side assert triggered'; exec sleep 1000"]
on_fatal_finding = "report"

[services.numpy]
command = ["sh", "-c", "for i in 1 2 3 4 5; do echo \"UserWarning: The value of the smallest subnormal for <class 'numpy.float64'> type is zero.\"; done; echo ready > numpy-done; exec sleep 1000"]
"#
    ));
    wait_until("trainer to be restarted for its fatal line", LONG, || {
        agent.service("trainer")["restarts"]
            .as_u64()
            .is_some_and(|r| r >= 1)
            && !agent.events_of("trainer", "exited").is_empty()
    });
    let exits = agent.events_of("trainer", "exited");
    let first = &exits[0];
    assert_eq!(first["class"], "fatal_finding", "{first}");
    assert_eq!(first["category"], "cuda-illegal-access", "{first}");
    assert!(
        first["line"]
            .as_str()
            .unwrap()
            .contains("illegal memory access"),
        "{first}"
    );

    wait_until("reporter's finding", LONG, || {
        finding(&agent, "reporter")["category"] == "cuda-device-assert"
    });
    let r = agent.service("reporter");
    assert_eq!(r["last_finding"]["fatal"], true, "{r}");
    assert_eq!(r["restarts"], 0, "report only: {r}");
    assert_eq!(r["state"], "running");
    let metrics = get(port, "/metrics", &[]).body;
    assert!(
        metrics.contains("steward_service_findings_total{service=\"reporter\",replica=\"0\",category=\"cuda-device-assert\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("steward_service_exits_total{service=\"trainer\",replica=\"0\",class=\"fatal_finding\"}"),
        "{metrics}"
    );

    wait_until("numpy to have printed its warnings", LONG, || {
        agent.path().join("numpy-done").exists()
    });
    wait_until("numpy's output to be read", LONG, || {
        std::fs::read_to_string(agent.state_dir().join("logs/numpy/output.log"))
            .is_ok_and(|l| l.lines().count() >= 5)
    });
    let n = agent.service("numpy");
    assert!(n["last_finding"].is_null(), "noise raised a finding: {n}");
    assert_eq!(n["restarts"], 0);
    assert!(agent.events_of("numpy", "finding").is_empty());
}

#[test]
fn a_child_oom_killed_in_the_cgroup_shows_on_the_service_while_its_shell_lives() {
    if !require_cgroups(
        "a_child_oom_killed_in_the_cgroup_shows_on_the_service_while_its_shell_lives",
    ) {
        return;
    }
    let agent = Agent::start(
        r#"
[services.shelly]
# The python child asks for 300 MiB inside a 64 MiB limit; the shell goes on.
command = ["sh", "-c", "python3 -c 'x = bytearray(300 * 1024 * 1024)'; echo child gone; exec sleep 1000"]
memory = "64MiB"
"#,
    );
    wait_until("the OOM kill of the child on shelly", LONG, || {
        !agent.events_of("shelly", "oom_kill").is_empty()
    });
    let kill = agent.events_of("shelly", "oom_kill")[0].clone();
    assert_eq!(kill["command"], "python3", "{kill}");
    assert_eq!(kill["limit"], 64 << 20, "{kill}");
    let shell = agent.service("shelly");
    assert_ne!(
        kill["pid"].as_u64(),
        shell["pid"].as_u64(),
        "the victim is the child: {kill} {shell}"
    );
    assert_eq!(shell["state"], "running", "{shell}");
    assert_eq!(shell["restarts"], 0, "{shell}");
    wait_until("the kill in ps", LONG, || {
        agent.service("shelly")["last_finding"]["category"] == "cgroup-oom"
    });
    let line = agent.service("shelly")["last_finding"]["line"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        line.contains(&format!("Killed process {}", kill["pid"])),
        "{line}"
    );
}

#[test]
fn an_oom_kill_the_kernel_logs_for_a_services_cgroup_lands_on_that_service() {
    // The kernel's own words, written through /dev/kmsg as root may, for a pid that is not
    // real: the agent attributes the kill by the cgroup path in the line.
    let Ok(mut kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") else {
        panic!("/dev/kmsg is not writable here: run the tests as root (scripts/test does in CI)");
    };
    let agent = Agent::start("[services.web]\ncommand = [\"sleep\", \"1000\"]\n");
    agent.running("web");
    let id = agent.state_dir_agent_id();
    let pid = 4_000_000 + std::process::id() % 100_000;
    for line in [
        "memory: usage 131072kB, limit 131072kB, failcnt 7".to_string(),
        format!("oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/x/steward-{id}/web,task_memcg=/x/steward-{id}/web,task=dataloader,pid={pid},uid=0"),
        format!("Memory cgroup out of memory: Killed process {pid} (dataloader) total-vm:900000kB, anon-rss:120000kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:1kB oom_score_adj:500"),
    ] {
        // One write is one record.
        std::io::Write::write_all(&mut kmsg, format!("{line}\n").as_bytes()).unwrap();
    }
    wait_until("the OOM kill on web", LONG, || {
        !agent.events_of("web", "oom_kill").is_empty()
    });
    let kill = agent.events_of("web", "oom_kill")[0].clone();
    assert_eq!(kill["pid"], pid, "{kill}");
    assert_eq!(kill["command"], "dataloader");
    assert_eq!(kill["rss"], 120000 * 1024);
    assert_eq!(kill["limit"], 131072 * 1024);
    assert_eq!(agent.service("web")["state"], "running");
}

/// `nvidia-smi -q -x`'s process list for one H200, holding `procs` (pid, MiB).
fn smi_with_processes(procs: &[(u64, u64)]) -> String {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/h200-host/sysroot/nvidia-smi-q.xml");
    let xml = std::fs::read_to_string(fixture).unwrap();
    let list: String = procs
        .iter()
        .map(|(pid, mib)| {
            format!("<process_info><gpu_instance_id>N/A</gpu_instance_id><compute_instance_id>N/A</compute_instance_id><pid>{pid}</pid><type>C</type><process_name>python3</process_name><used_memory>{mib} MiB</used_memory></process_info>")
        })
        .collect();
    xml.replacen(
        "<processes>\n\t\t</processes>",
        &format!("<processes>{list}</processes>"),
        1,
    )
}

#[test]
fn gpu_memory_per_service_sums_its_processes_from_the_gpus_process_list() {
    // The captured H200 host as the GPU source, its process list rewritten to name this
    // test's real processes: the sizes two PyTorch workers held there (3684 and 5732 MiB).
    let root = tempfile::tempdir().unwrap();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/h200-host/sysroot");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", fixture.display()))
        .arg(root.path())
        .status()
        .unwrap();
    assert!(copied.success());
    let agent = Agent::prepare(
        "[services.workers]\n# Two processes: the shell and its python child.\ncommand = [\"sh\", \"-c\", \"python3 -c 'import time; time.sleep(1000)' & exec sleep 1000\"]\ngpus = [0]\ngpu_memory = \"4GiB\"\n\n[services.other]\ncommand = [\"sleep\", \"1000\"]\n",
    );
    let agent = agent.launch_args(&["--sysroot", root.path().to_str().unwrap(), "--force"]);
    agent.running("workers");
    wait_until("both processes of workers", LONG, || {
        agent.service("workers")["processes"]
            .as_array()
            .is_some_and(|p| p.len() == 2)
    });
    let pids: Vec<u64> = agent.service("workers")["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    // A pid that is nobody's here stays nobody's.
    let xml = smi_with_processes(&[(pids[0], 3684), (pids[1], 5732), (999_999_999, 1000)]);
    std::fs::write(root.path().join("nvidia-smi-q.xml"), xml).unwrap();
    wait_until("workers' GPU memory", LONG, || {
        agent.service("workers")["gpu_memory_used"].as_u64() == Some((3684 + 5732) << 20)
    });
    assert!(agent.service("other")["gpu_memory_used"].is_null());
    let table = stdout(&agent.cli(&["ps"]));
    assert!(
        table.contains("GPU MEMORY") && table.contains("9.20 GiB"),
        "{table}"
    );
}

#[test]
fn explain_service_reads_its_current_run_or_its_last_runs() {
    // Run 1 ends with a CUDA OOM; every later run with a port in use.
    let agent = Agent::start(
        r#"
[services.model]
command = ["sh", "-c", "if test -f second; then echo 'OSError: [Errno 98] Address already in use' >&2; else touch second; echo 'torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB' >&2; fi; exit 1"]
backoff = { initial = "100ms", max = "200ms" }
"#,
    );
    wait_until("model to have run three times", LONG, || {
        agent.events_of("model", "started").len() >= 3
    });
    assert!(agent.cli(&["stop", "model"]).status.success());
    let current = agent.cli(&["explain", "model"]);
    let text = stdout(&current);
    assert!(current.status.success(), "{}", stderr(&current));
    assert!(text.starts_with("cause: port-in-use"), "{text}");
    assert!(!text.contains("cuda-oom"), "only the current run: {text}");
    let all = agent.cli(&["explain", "model", "--runs", "100"]);
    assert!(stdout(&all).contains("cuda-oom"), "{}", stdout(&all));
    let unknown = agent.cli(&["explain", "nosuch"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("nosuch is neither a file nor a service with logs"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn a_libcuda_segfault_of_a_services_process_and_an_xid_said_in_words_are_events() {
    let Ok(mut kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") else {
        panic!("/dev/kmsg is not writable here: run the tests as root (scripts/test does in CI)");
    };
    let agent = Agent::start("[services.vllm]\ncommand = [\"sleep\", \"1000\"]\n");
    agent.running("vllm");
    let pid = agent.service("vllm")["pid"].as_u64().unwrap();
    let pci = format!("0000:{:02x}:1e", std::process::id() % 250);
    for line in [
        format!("python3[{pid}]: segfault at 10 ip 00007f3a1c2b4d5e sp 00007ffd7c1e2a40 error 4 in libcuda.so.535.104.05[7f3a1b000000+1e00000]"),
        format!("NVRM: GPU at PCI:{pci}: GPU has fallen off the bus."),
    ] {
        std::io::Write::write_all(&mut kmsg, format!("{line}\n").as_bytes()).unwrap();
    }
    wait_until("the libcuda segfault on vllm", LONG, || {
        agent
            .events_of("vllm", "finding")
            .iter()
            .any(|e| e["category"] == "libcuda-segfault")
    });
    wait_until("it in ps", LONG, || {
        agent.service("vllm")["last_finding"]["category"] == "libcuda-segfault"
    });
    wait_until("the Xid in words", LONG, || {
        agent
            .events()
            .iter()
            .any(|e| e["event"] == "gpu_xid" && e["xid"] == 79 && e["gpu"] == format!("PCI:{pci}"))
    });
}
