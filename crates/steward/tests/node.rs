//! `steward host`, `plan` and `doctor`: on this machine (cgroup v1, no GPU), on a fixture
//! root where every check fails, and `up` refusing a config that does not fit.

mod common;
use common::*;
use std::path::Path;
use steward_host::synthetic::SyntheticHost;

#[test]
fn plan_and_doctor_on_this_machine() {
    let agent = Agent::prepare(
        "[services.web]\ncommand = [\"sleep\", \"1\"]\nmemory = \"256MiB\"\ncpus_per_replica = 1\n",
    );
    let cfg = agent.config.to_str().unwrap();
    let out = steward(&["plan", "-f", cfg], agent.path());
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("web      -    0") || text.contains(" web "),
        "{text}"
    );
    assert!(text.contains("admission: ok"), "{text}");
    let json: serde_json::Value =
        serde_json::from_slice(&steward(&["plan", "-f", cfg, "--json"], agent.path()).stdout)
            .unwrap();
    assert_eq!(
        json["instances"][0]["cpus"].as_array().unwrap().len(),
        1,
        "{json}"
    );

    let out = steward(&["doctor", "--no-dns", "-f", cfg], agent.path());
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("ok    cgroups            cgroup "), "{text}");
    assert!(text.contains("fine for a CPU node"), "{text}");
    assert!(text.contains("skip  dns"), "{text}");

    let out = steward(&["host", "--json"], agent.path());
    let host: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(host["memory"]["total"].as_u64().unwrap() > 0);
    assert!(!host["cpu"]["online"].as_array().unwrap().is_empty());
}

#[test]
fn doctor_fails_the_disk_check_when_the_state_dir_is_read_only() {
    let agent =
        Agent::prepare("state_dir = \"state\"\n[services.web]\ncommand = [\"sleep\", \"1\"]\n");
    let _fs = Tmpfs::mount(&agent.path().join("state"), "size=1m,ro");
    let cfg = agent.config.to_str().unwrap();
    let out = steward(&["doctor", "--no-dns", "-f", cfg], agent.path());
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains(" disk "))
        .unwrap_or_else(|| panic!("no disk line: {text}"));
    assert!(
        line.starts_with("fail") && line.contains("read-only"),
        "{text}"
    );
    assert!(text.contains("remount it read-write"), "{text}");
}

/// A node where everything doctor looks at is wrong.
fn broken_node(root: &Path) {
    let mut host = SyntheticHost::amd_two_ccx();
    host.gpu_numa = vec![0];
    host.write(root).unwrap();
    let w = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w("proc/meminfo", "MemTotal: 134217728 kB\nMemAvailable: 100000000 kB\nSwapTotal: 8388608 kB\nSwapFree: 8000000 kB\n");
    w(
        "proc/sys/kernel/core_pattern",
        "|/usr/lib/systemd/systemd-coredump %P %u %g %s %t %c %h\n",
    );
    w("proc/self/limits", "Limit  Soft Limit  Hard Limit  Units\nMax core file size        unlimited            unlimited            bytes\n");
    w("steward-fixture/disk", "100000000000 1000000000\n");
    w("proc/4242/stat", "4242 (python3) Z 4000 4242 4242 0 -1\n");
    w("proc/4000/stat", "4000 (gunicorn) S 1 4000 4000 0 -1\n");
    w(
        "sys/fs/cgroup/cgroup.controllers",
        "cpuset cpu io memory pids\n",
    );
    w("proc/self/cgroup", "0::/job.slice/worker\n");
    w("sys/fs/cgroup/job.slice/worker/cgroup.controllers", "\n");
    w("etc/resolv.conf", "nameserver 127.0.0.254\n");
    w(
        "nvidia-smi-q.xml",
        "<nvidia_smi_log><driver_version>535.1</driver_version><gpu id=\"00000000:18:00.0\"><product_name>Tired GPU</product_name>\
         <persistence_mode>Disabled</persistence_mode><uuid>GPU-dead</uuid><minor_number>0</minor_number>\
         <fb_memory_usage><total>81920 MiB</total><used>30000 MiB</used><free>51920 MiB</free></fb_memory_usage>\
         <ecc_errors><volatile><dram_uncorrectable>3</dram_uncorrectable></volatile></ecc_errors>\
         <remapped_rows><remapped_row_pending>Yes</remapped_row_pending></remapped_rows>\
         <processes><process_info><pid>31337</pid><used_memory>30000 MiB</used_memory></process_info></processes></gpu></nvidia_smi_log>",
    );
}

#[test]
fn doctor_on_a_broken_node_fails_every_check_and_names_each_fix() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    broken_node(&root);
    std::fs::write(
        dir.path().join("steward.toml"),
        "[services.train]\ncommand = [\"sleep\", \"1\"]\nmemory = \"500GiB\"\ngpus = \"all\"\noom_score_adj = 0\nenv = { CUDA_LAUNCH_BLOCKING = \"1\", PYTORCH_NO_CUDA_MEMORY_CACHING = \"1\" }\n",
    )
    .unwrap();
    let out = steward(
        &[
            "doctor",
            "-f",
            "steward.toml",
            "--sysroot",
            root.to_str().unwrap(),
            "--json",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let checks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let by = |name: &str| -> Vec<&serde_json::Value> {
        checks.iter().filter(|c| c["name"] == name).collect()
    };
    // The inventory line ("1 GPU via …, driver …") is information; each GPU's own checks follow it.
    for c in checks.iter().filter(|c| c["name"] != "gpus") {
        assert_ne!(c["level"], "ok", "every check should find a problem: {c}");
        assert!(!c["fix"].as_str().unwrap().is_empty(), "no fix for {c}");
    }
    for (name, level, seen) in [
        ("core-dumps", "fail", "on (core limit unlimited)"),
        ("disk", "fail", "(1%)"),
        ("swap", "warn", "swap on"),
        ("admission", "fail", "do not fit"),
        ("zombies", "warn", "not reaped by: gunicorn (pid 4000)"),
        ("gpu-persistence", "warn", "persistence mode off"),
        ("gpu-ecc", "fail", "3 uncorrected ECC error(s)"),
        ("gpu-memory-repair", "fail", "row remapping pending"),
        ("gpu-foreign-memory", "warn", "pid 31337 (29.30 GiB)"),
        ("cgroups", "warn", "memory controller is not delegated"),
        ("dns", "fail", "127.0.0.254"),
        ("env", "warn", "CUDA_LAUNCH_BLOCKING=1"),
        ("oom-score", "warn", "oom_score_adj = 0"),
    ] {
        let found = by(name);
        assert!(
            found
                .iter()
                .any(|c| c["level"] == level && c["seen"].as_str().unwrap().contains(seen)),
            "{name}: expected {level} with {seen:?}, got {found:?}"
        );
    }
    assert_eq!(by("env").len(), 2, "both debugging variables named");

    let text = stdout(&steward(
        &[
            "doctor",
            "-f",
            "steward.toml",
            "--sysroot",
            root.to_str().unwrap(),
            "--no-dns",
        ],
        dir.path(),
    ));
    assert!(text.contains("fail  gpu-ecc"), "{text}");
    assert!(text.contains("      fix: "), "{text}");
}

#[test]
fn up_refuses_an_overcommitted_config_then_starts_with_force() {
    let mut agent = Agent::prepare(
        "reserve_memory = \"1TiB\"\n[services.s]\ncommand = [\"sleep\", \"1000\"]\nmemory = \"64MiB\"\n",
    );
    let cfg = agent.config.to_str().unwrap().to_string();
    let out = steward(&["up", "-f", &cfg], agent.path());
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("admission: REFUSED"), "{err}");
    assert!(err.contains("MemTotal"), "{err}");
    assert!(
        err.contains("refusing to start; fix the config, or `steward up --force`"),
        "{err}"
    );
    assert!(
        !agent.state_dir().join("steward.sock").exists(),
        "nothing started"
    );

    let out = steward(&["plan", "-f", &cfg], agent.path());
    assert_eq!(
        out.status.code(),
        Some(1),
        "plan exits non-zero when it refuses"
    );

    agent = agent.launch_args(&["--force"]);
    agent.running("s");
    assert!(
        agent
            .agent_log()
            .contains("starting anyway because of --force"),
        "{}",
        agent.agent_log()
    );
}
