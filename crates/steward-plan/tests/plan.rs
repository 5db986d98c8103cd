//! Placement on three topologies (the real H200, a synthetic 2-socket host with 4 GPUs,
//! AMD CCX layouts), with snapshots of the plan table, and admission on the numbers of a node that hung (500GiB asked of 503GiB).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use steward_host::synthetic::SyntheticHost;
use steward_host::{CpuTopology, GpuInventory, MemInfo, Sysroot};
use steward_plan::{plan, render, AdmissionInputs, Plan};

fn config(text: &str) -> steward_config::Config {
    steward_config::parse(text, Path::new("/srv/steward.toml")).unwrap()
}

fn plan_on(root: &Sysroot, text: &str) -> Plan {
    let mem = MemInfo::read(root).unwrap();
    let cpu = CpuTopology::read(root).unwrap();
    let gpus = GpuInventory::discover(root);
    let peaks = BTreeMap::new();
    let input = AdmissionInputs {
        mem: Some(&mem),
        cpu: Some(&cpu),
        gpus: &gpus,
        observed_peaks: &peaks,
    };
    plan(&config(text), &input).unwrap()
}

fn synthetic(host: SyntheticHost) -> (tempfile::TempDir, Sysroot) {
    let dir = tempfile::tempdir().unwrap();
    host.write(dir.path()).unwrap();
    let root = Sysroot::at(dir.path());
    (dir, root)
}

fn cpus(p: &Plan) -> Vec<String> {
    p.instances
        .iter()
        .map(|i| steward_host::cpulist::format(i.cpus.as_deref().unwrap_or(&[])))
        .collect()
}

#[test]
fn h200_four_workers_get_four_cores_each() {
    let root = Sysroot::at(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/h200-host/sysroot"),
    );
    let p = plan_on(
        &root,
        "[services.ocr]\ncommand = [\"x\"]\ngpus = \"all\"\nreplicas = 4\ncpus_per_replica = 4\nmemory = \"24GiB\"\ngpu_memory = \"30GiB\"\n",
    );
    assert_eq!(cpus(&p), vec!["0-3", "4-7", "8-11", "12-15"]);
    assert!(p.admission.admitted, "{:?}", p.admission);
    insta::assert_snapshot!("h200", render(&p));
}

#[test]
fn two_sockets_keep_each_replica_on_its_gpus_node_with_siblings() {
    let (_dir, root) = synthetic(SyntheticHost::two_socket_4_gpus());
    let p = plan_on(
        &root,
        "[services.train]\ncommand = [\"x\"]\ngpus = \"all\"\nreplicas_per_gpu = 1\ncpus_per_replica = 4\nmemory = \"64GiB\"\n\
         [services.web]\ncommand = [\"x\"]\nmemory = \"4GiB\"\n",
    );
    assert_eq!(
        cpus(&p),
        vec!["0-3,16-19", "4-7,20-23", "8-11,24-27", "12-15,28-31", ""]
    );
    assert!(
        p.admission.warnings.is_empty(),
        "{:?}",
        p.admission.warnings
    );
    insta::assert_snapshot!("two_socket", render(&p));

    // Unpinned GPU replicas on a 2-node host draw a warning.
    let p = plan_on(
        &root,
        "[services.train]\ncommand = [\"x\"]\ngpus = \"all\"\n",
    );
    assert!(
        p.admission
            .warnings
            .iter()
            .any(|w| w.contains("2 NUMA nodes")),
        "{:?}",
        p.admission.warnings
    );
}

#[test]
fn amd_two_ccx_layout_puts_each_gpu_on_its_own_ccx() {
    let (_dir, root) = synthetic(SyntheticHost::amd_two_ccx());
    let p = plan_on(&root, "[services.pipeline]\ncommand = [\"x\"]\ngpus = \"all\"\nreplicas = 4\ncpus_per_replica = 1\n");
    // As operators pin by hand: GPU 0 on CCX0 ("0,12"), GPU 1 on CCX1 ("6,18").
    assert_eq!(cpus(&p), vec!["0,12", "6,18", "1,13", "7,19"]);
    insta::assert_snapshot!("amd_seed", render(&p));
}

#[test]
fn amd_four_ccx_gives_each_replica_a_whole_ccx() {
    let (_dir, root) = synthetic(SyntheticHost::amd_4_ccx());
    let p = plan_on(
        &root,
        "[services.w]\ncommand = [\"x\"]\ngpus = \"all\"\nreplicas = 4\ncpus_per_replica = 3\n",
    );
    assert_eq!(
        cpus(&p),
        vec!["0-2,12-14", "3-5,15-17", "6-8,18-20", "9-11,21-23"]
    );
    assert!(
        p.admission.warnings.is_empty(),
        "{:?}",
        p.admission.warnings
    );
    insta::assert_snapshot!("amd_4_ccx", render(&p));
    // Five replicas of 3 cores do not fit 12 cores.
    let p = plan_on(
        &root,
        "[services.w]\ncommand = [\"x\"]\ngpus = \"all\"\nreplicas = 5\ncpus_per_replica = 3\n",
    );
    assert!(!p.admission.admitted);
    assert!(
        p.admission.refusals[0]
            .message
            .contains("w#4 needs 3 whole core(s) but only 0 are free"),
        "{:?}",
        p.admission.refusals
    );
}

#[test]
fn asking_500gib_on_a_503gib_host_is_refused_naming_the_unit_trap() {
    let mem = MemInfo {
        total: 503 << 30,
        available: 500 << 30,
        swap_total: 0,
        swap_free: 0,
    };
    let gpus = GpuInventory::fake(0);
    let peaks = BTreeMap::new();
    let input = AdmissionInputs {
        mem: Some(&mem),
        cpu: None,
        gpus: &gpus,
        observed_peaks: &peaks,
    };
    let p = plan(
        &config("[services.train]\ncommand = [\"x\"]\nmemory = \"500GiB\"\n"),
        &input,
    )
    .unwrap();
    assert!(!p.admission.admitted);
    let r = &p.admission.refusals[0];
    assert_eq!(r.key, "services.train.memory");
    assert!(
        r.message.contains(
            "memory limits of 500.00 GiB (536.87 GB) plus a reserve of 25.15 GiB (27.00 GB)"
        ),
        "{}",
        r.message
    );
    assert!(
        r.message.contains("503.00 GiB (540.09 GB)"),
        "{}",
        r.message
    );
    assert!(
        r.message.contains("22.15 GiB (23.78 GB) missing"),
        "{}",
        r.message
    );
    assert!(
        r.message.contains("`free -g` and `nvidia-smi` print GiB"),
        "{}",
        r.message
    );
    insta::assert_snapshot!("seed_004", render(&p));

    // The same request sized to fit is admitted, with a headroom warning.
    let p = plan(
        &config("[services.train]\ncommand = [\"x\"]\nmemory = \"470GiB\"\n"),
        &input,
    )
    .unwrap();
    assert!(p.admission.admitted);
    assert!(
        p.admission.warnings[0].contains("headroom"),
        "{:?}",
        p.admission.warnings
    );
}

#[test]
fn cpus_the_host_lacks_and_gpu_memory_overcommit_are_refused() {
    let (_dir, root) = synthetic(SyntheticHost::amd_4_ccx());
    let p = plan_on(&root, "[services.w]\ncommand = [\"x\"]\ncpus = \"20-30\"\n");
    let r = &p.admission.refusals[0];
    assert_eq!(r.key, "services.w.cpus");
    assert!(
        r.message
            .contains("CPU(s) 24-30 do not exist; this host has 0-23"),
        "{}",
        r.message
    );
    let p = plan_on(
        &root,
        "[services.w]\ncommand = [\"x\"]\ngpus = [0]\nreplicas = 2\ngpu_memory = \"16GiB\"\n",
    );
    let r = &p.admission.refusals[0];
    assert!(
        r.message.contains("GPU 0 (Synthetic GPU) has 23.99 GiB"),
        "{}",
        r.message
    );
    assert!(
        r.message.contains("w#0, w#1 ask for 32.00 GiB"),
        "{}",
        r.message
    );
}

#[test]
fn a_limit_below_the_observed_peak_is_a_warning() {
    let mem = MemInfo {
        total: 64 << 30,
        available: 60 << 30,
        swap_total: 0,
        swap_free: 0,
    };
    let gpus = GpuInventory::fake(0);
    let peaks = BTreeMap::from([("api".to_string(), 3u64 << 30)]);
    let input = AdmissionInputs {
        mem: Some(&mem),
        cpu: None,
        gpus: &gpus,
        observed_peaks: &peaks,
    };
    let p = plan(
        &config("[services.api]\ncommand = [\"x\"]\nmemory = \"2GiB\"\n"),
        &input,
    )
    .unwrap();
    assert!(
        p.admission
            .warnings
            .iter()
            .any(|w| w.contains("below the 3.00 GiB (3.22 GB) it was seen using")),
        "{:?}",
        p.admission.warnings
    );
}
