//! The import against compose files written for it (an incident-style GPU pipeline, a web
//! stack, every form of `depends_on` and `healthcheck`), real ones from public repositories
//! (`compose/public/`, each with its source on its first line), and bad input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use steward_import::{import, ImportError, Imported, Options, What};

fn compose(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/compose")
        .join(name)
}

/// The incident-style pipeline: the README's example.
fn incident() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/compose-import/compose.yml")
}

fn run(files: &[PathBuf], collapse: bool) -> Result<Imported, ImportError> {
    import(
        files,
        Path::new("."),
        &BTreeMap::new(),
        Options { collapse },
    )
}

fn toml_of(i: &Imported) -> toml::Table {
    toml::from_str(&i.toml).unwrap_or_else(|e| panic!("not TOML: {e}\n{}", i.toml))
}

fn lines(i: &Imported) -> String {
    steward_import::report::lines(&i.decisions).join("\n")
}

#[test]
fn the_incident_pipeline_collapses_into_one_service_per_gpu_with_its_workarounds_mapped() {
    let i = run(&[incident()], true).unwrap();
    let t = toml_of(&i);
    let services = t["services"].as_table().unwrap();
    let names: Vec<&String> = services.keys().collect();
    assert_eq!(
        names,
        ["aof-check", "pipeline-gpu0", "pipeline-gpu1", "redis"],
        "{}",
        i.toml
    );
    let gpu0 = &services["pipeline-gpu0"];
    assert_eq!(gpu0["replicas_per_gpu"].as_integer(), Some(5));
    assert_eq!(
        services["pipeline-gpu1"]["replicas_per_gpu"].as_integer(),
        Some(2)
    );
    assert_eq!(gpu0["gpus"].as_array().unwrap()[0].as_integer(), Some(0));
    assert_eq!(gpu0["memory"].as_str(), Some("12GiB"));
    assert_eq!(gpu0["oom_score_adj"].as_integer(), Some(500));
    assert_eq!(gpu0["core_dumps"].as_bool(), Some(false));
    assert_eq!(gpu0["cpus_per_replica"].as_integer(), Some(1));
    assert!(gpu0.get("cpus").is_none());
    assert_eq!(gpu0["cuda_env"].as_str(), Some("default"));
    assert_eq!(gpu0["restart"].as_str(), Some("always"));
    assert_eq!(gpu0["log"]["max_size"].as_str(), Some("50MiB"));
    // The chain is gone; the dependency on Redis stays.
    assert_eq!(gpu0["depends_on"]["redis"].as_str(), Some("healthy"));
    assert_eq!(gpu0["depends_on"].as_table().unwrap().len(), 1);
    let env = gpu0["env"].as_table().unwrap();
    assert!(!env.contains_key("CUDA_VISIBLE_DEVICES") && !env.contains_key("CUDA_DEVICE_ORDER"));
    assert_eq!(env["CUDA_LAUNCH_BLOCKING"].as_str(), Some("1"));
    assert_eq!(
        services["redis"]["depends_on"]["aof-check"].as_str(),
        Some("completed")
    );
    assert_eq!(services["aof-check"]["restart"].as_str(), Some("never"));

    let report = lines(&i);
    for said in [
        "became pipeline-gpu0 (gpus = [0], replicas_per_gpu = 5) and pipeline-gpu1 (gpus = [1], replicas_per_gpu = 2)",
        "7 services, ",
        "compose reads 12G in powers of 2",
        "Kubernetes would read 12G as powers of 10",
        "init: dropped: steward reaps every orphan",
        "dns: dropped: host processes use the host's resolvers: `steward doctor`",
        "CUDA_LAUNCH_BLOCKING: mapped: kept, but it serialises every CUDA call",
        "cpus_per_replica = 1",
        "redis: ports: cannot map",
    ] {
        assert!(report.contains(said), "the report lacks {said:?}:\n{report}");
    }
    // The same decision about seven workers is one line.
    assert!(
        report.contains("pipeline-gpu0-w0 and 6 more: init: dropped"),
        "{report}"
    );
}

#[test]
fn without_collapse_the_workers_stay_and_the_cpusets_get_a_suggestion() {
    let i = run(&[incident()], false).unwrap();
    let t = toml_of(&i);
    let services = t["services"].as_table().unwrap();
    assert_eq!(services.len(), 9);
    let w1 = &services["pipeline-gpu0-w1"];
    assert_eq!(w1["cpus"].as_str(), Some("1,13"));
    assert_eq!(
        w1["depends_on"]["pipeline-gpu0-w0"].as_str(),
        Some("healthy")
    );
    assert!(lines(&i).contains("cpus_per_replica = K"), "{}", lines(&i));
}

#[test]
fn a_web_stack_takes_over_what_runs_on_the_host_and_marks_images_todo() {
    let i = run(&[compose("web.yml")], true).unwrap();
    let t = toml_of(&i);
    let services = t["services"].as_table().unwrap();
    assert_eq!(services.keys().collect::<Vec<_>>(), ["api", "worker"]);
    let api = &services["api"];
    assert_eq!(
        api["shell"].as_bool(),
        Some(true),
        "compose's string command"
    );
    assert_eq!(
        api["health"]["http"].as_str(),
        Some("http://127.0.0.1:8000/healthz")
    );
    assert_eq!(api["stop_timeout"].as_str(), Some("90s"));
    assert_eq!(
        api["env"]["SECRET_KEY"].as_str(),
        Some("abc"),
        "from env_file"
    );
    assert_eq!(
        api["env"]["DATABASE_URL"].as_str().unwrap(),
        "postgres://shop:shop@127.0.0.1:5432/shop",
        "the default interpolated, the service's host made local"
    );
    let worker = &services["worker"];
    assert_eq!(worker["restart"].as_str(), Some("on-failure"));
    assert_eq!(worker["crash_loop"]["exits"].as_integer(), Some(5));
    assert_eq!(worker["memory_swap"].as_str(), Some("3GiB"));
    assert_eq!(worker["depends_on"]["api"].as_str(), Some("healthy"));
    assert!(
        i.toml.contains("# TODO: it runs the image postgres:16"),
        "{}",
        i.toml
    );
    assert!(i.toml.contains("# [services.redis]"));
    let report = lines(&i);
    for said in [
        "redis: image: todo",
        "depends_on: dropped: postgres (started) is written commented out",
        "CELERY_LOG_LEVEL has no value in the file and is not set here",
        "networks: cannot map",
        "DATABASE_URL: changed: the host postgres",
    ] {
        assert!(
            report.contains(said),
            "the report lacks {said:?}:\n{report}"
        );
    }
}

#[test]
fn every_form_of_depends_on_and_healthcheck() {
    let i = run(&[compose("forms.yml")], true).unwrap();
    let t = toml_of(&i);
    let s = t["services"].as_table().unwrap();
    let health = |n: &str| s[n].get("health").cloned();
    let base = health("base").unwrap();
    assert_eq!(base["exec"].as_array().unwrap()[0].as_str(), Some("true"));
    assert_eq!(
        (base["interval"].as_str(), base["timeout"].as_str()),
        (Some("1s"), Some("1s"))
    );
    assert_eq!(
        (
            base["start_period"].as_str(),
            base["start_interval"].as_str()
        ),
        (Some("2s"), Some("200ms"))
    );
    assert_eq!(base["retries"].as_integer(), Some(2));
    assert_eq!(
        health("shell-check").unwrap()["exec"].as_array().unwrap()[2].as_str(),
        Some("test -d / && true")
    );
    assert_eq!(
        health("string-check").unwrap()["exec"].as_array().unwrap()[2].as_str(),
        Some("exit 0")
    );
    assert_eq!(
        health("http-check").unwrap()["http"].as_str(),
        Some("http://127.0.0.1:9/ready")
    );
    assert!(health("no-check").is_none() && health("disabled-check").is_none());
    let short = s["short-form"]["depends_on"].as_table().unwrap();
    assert_eq!(
        (short["base"].as_str(), short["shell-check"].as_str()),
        (Some("started"), Some("started"))
    );
    let long = s["long-form"]["depends_on"].as_table().unwrap();
    assert_eq!(long["base"].as_str(), Some("healthy"));
    assert_eq!(long["once"].as_str(), Some("completed"));
    assert_eq!(long["string-check"].as_str(), Some("started"));
    let report = lines(&i);
    assert!(
        report.contains("required: false: steward waits for it anyway"),
        "{report}"
    );
    assert!(
        report.contains(
            "restart: true: steward does not restart a service when its dependency restarts"
        ),
        "{report}"
    );
}

#[test]
fn real_compose_files_import_with_every_key_reported() {
    let dir = compose("public");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("# Source: https://github.com/"),
            "{} names no source",
            file.display()
        );
        let i = run(std::slice::from_ref(&file), true)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        toml_of(&i);
        // Every key of every service has a decision about it (x- keys are only anchors).
        let root = steward_import::yaml::parse(&text).unwrap();
        for (name, svc) in root.get("services").unwrap().entries() {
            for (key, _) in svc.entries() {
                if key.starts_with("x-") {
                    continue;
                }
                let said = i.decisions.iter().any(|d| {
                    d.service.as_deref() == Some(name)
                        && (d.key == *key
                            || d.key.starts_with(&format!("{key}."))
                            || (key == "entrypoint" && d.key == "command")
                            || (key == "deploy" && d.key == "gpus"))
                });
                assert!(
                    said || key == "deploy" || key == "environment" || key == "env_file",
                    "{}: {name}.{key} has no decision:\n{}",
                    file.display(),
                    lines(&i)
                );
            }
        }
    }
}

#[test]
fn override_files_and_dotenv_as_compose_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "PORT=9000\nTAG=from-dotenv\n").unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    command: [\"serve\", \"--port\", \"${PORT}\"]\n    environment: [A=1, \"TAG=${TAG:-x}\"]\n    mem_limit: 1g\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("compose.override.yaml"),
        "services:\n  web:\n    environment:\n      B: \"2\"\n    mem_limit: 512m\n",
    )
    .unwrap();
    let env: BTreeMap<String, String> = [("PORT".to_string(), "9100".to_string())].into();
    let i = import(&[], dir.path(), &env, Options { collapse: true }).unwrap();
    assert_eq!(i.files.len(), 2, "the override file is read by default");
    let t = toml_of(&i);
    let web = &t["services"]["web"];
    assert_eq!(
        web["command"].as_array().unwrap()[2].as_str(),
        Some("9100"),
        "the environment wins over .env"
    );
    assert_eq!(web["memory"].as_str(), Some("512MiB"), "the override wins");
    let env = web["env"].as_table().unwrap();
    assert_eq!(
        (env["A"].as_str(), env["B"].as_str(), env["TAG"].as_str()),
        (Some("1"), Some("2"), Some("from-dotenv"))
    );
}

#[test]
fn bad_input_names_the_file_the_place_and_the_yaml_path() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cases = [
        (write("broken.yml", "services:\n  web: [1, 2\n  db: x\n"), vec!["broken.yml:", "not YAML"]),
        (write("list.yml", "- a\n- b\n"), vec!["list.yml: not a compose file", "a list"]),
        (write("empty-ish.yml", "version: '3'\n"), vec!["empty-ish.yml: not a compose file", "no `services:`"]),
        (write("unknown.yml", "services: {}\nservice: {}\n"), vec!["unknown.yml:2:1: service:", "not a top-level key", "did you mean `services`"]),
        (
            write("cycle.yml", "services:\n  a:\n    command: [x]\n    depends_on: [b]\n  b:\n    command: [x]\n    depends_on:\n      a: {condition: service_started}\n"),
            vec!["cycle.yml:4:", "services.a.depends_on", "dependency cycle: a -> b -> a"],
        ),
        (write("required.yml", "services:\n  a:\n    command: [\"${NEEDED:?set NEEDED}\"]\n"), vec!["required.yml:3:", "services.a.command.[0]", "NEEDED must be set"]),
    ];
    for (file, wants) in cases {
        let err = run(std::slice::from_ref(&file), true)
            .err()
            .unwrap_or_else(|| panic!("{} was accepted", file.display()))
            .to_string();
        for w in wants {
            assert!(err.contains(w), "{}: {err:?} lacks {w:?}", file.display());
        }
    }
    let missing = run(&[dir.path().join("nope.yml")], true)
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("cannot read") && missing.contains("nope.yml"),
        "{missing}"
    );
    let none = import(
        &[],
        dir.path(),
        &BTreeMap::new(),
        Options { collapse: true },
    )
    .unwrap_err()
    .to_string();
    assert!(none.contains("no compose file given"), "{none}");
}

#[test]
fn nothing_is_dropped_silently_unknown_keys_included() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yml");
    std::fs::write(
        &file,
        "services:\n  a:\n    command: [x]\n    frobnicate: true\n    privileged: true\n",
    )
    .unwrap();
    let i = run(&[file], true).unwrap();
    let unknown = i.decisions.iter().find(|d| d.key == "frobnicate").unwrap();
    assert_eq!(
        (unknown.what, unknown.note.as_str()),
        (What::CannotMap, "steward does not do this")
    );
    assert!(i
        .decisions
        .iter()
        .any(|d| d.key == "privileged" && d.what == What::CannotMap));
    assert_eq!(i.cannot_map(), 2);
}

#[test]
fn gpus_from_every_place_compose_puts_them_and_a_cpu_quota_as_whole_cores() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yml");
    std::fs::write(
        &file,
        r#"services:
  ids:
    command: [serve]
    deploy:
      resources:
        reservations:
          devices: [{ driver: nvidia, device_ids: ["1", "3"], capabilities: [gpu] }]
        limits: { cpus: "2.5" }
  counted:
    command: [serve]
    deploy: { resources: { reservations: { devices: [{ capabilities: [gpu], count: 2 }] } } }
  every:
    command: [serve]
    deploy: { resources: { reservations: { devices: [{ capabilities: [gpu], count: all }] } } }
  runtime:
    command: [serve]
    runtime: nvidia
  by-env:
    command: [serve]
    environment: { NVIDIA_VISIBLE_DEVICES: "GPU-3f2a, GPU-77aa", NVIDIA_DRIVER_CAPABILITIES: compute }
  none:
    command: [serve]
    environment: { CUDA_VISIBLE_DEVICES: "" }
    cpus: 4
    cpuset: "0-3"
"#,
    )
    .unwrap();
    let i = run(&[file], true).unwrap();
    let t = toml_of(&i);
    let s = t["services"].as_table().unwrap();
    let gpus = |n: &str| s[n].get("gpus").map(|g| g.to_string());
    assert_eq!(gpus("ids").as_deref(), Some("[1, 3]"));
    assert_eq!(s["ids"]["cpus_per_replica"].as_integer(), Some(3));
    assert_eq!(gpus("counted").as_deref(), Some("[0, 1]"));
    assert_eq!(gpus("every").as_deref(), Some("\"all\""));
    assert_eq!(gpus("runtime").as_deref(), Some("\"all\""));
    assert_eq!(
        gpus("by-env").as_deref(),
        Some("[\"GPU-3f2a\", \"GPU-77aa\"]")
    );
    assert!(s["by-env"]
        .get("env")
        .is_none_or(|e| e.get("NVIDIA_DRIVER_CAPABILITIES").is_none()));
    assert_eq!(
        gpus("none"),
        None,
        "an empty CUDA_VISIBLE_DEVICES is no GPU"
    );
    assert_eq!(
        s["none"]["cpus"].as_str(),
        Some("0-3"),
        "the cpuset wins over the quota"
    );
    assert!(
        lines(&i).contains("count: 2 became the first 2 GPUs"),
        "{}",
        lines(&i)
    );
}
