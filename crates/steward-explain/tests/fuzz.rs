//! Property tests over arbitrary input: no panic, findings point at real lines, memory
//! bounded. CI runs the default number of cases; a longer fuzzing run is
//! `PROPTEST_CASES=100000 cargo test --release -p steward-explain --test fuzz`.

use proptest::prelude::*;

fn fragments() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"CUDA out of memory".to_vec()),
        Just(b"NVRM: Xid (PCI:0000:07:00): 79, ".to_vec()),
        Just(b"[CRITICAL] WORKER TIMEOUT (pid:".to_vec()),
        Just(b"Worker (pid:7) was sent SIGKILL! Perhaps out of memory?".to_vec()),
        Just(b"Memory cgroup out of memory: Killed process 1".to_vec()),
        Just(b"{\"log\":\"".to_vec()),
        Just(b"\",\"time\":\"2026-03-06T11:02:33Z\"}".to_vec()),
        Just(b"[Tue Mar  3 02:11:45 2026] ".to_vec()),
        Just(b"Fatal Python error: Segmentation fault".to_vec()),
        Just(b"libcuda.so".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..64),
    ];
    prop::collection::vec(piece, 0..200).prop_map(|v| v.concat())
}

/// 48 cases per run in CI (debug builds are slow); PROPTEST_CASES overrides it.
fn config() -> ProptestConfig {
    if std::env::var("PROPTEST_CASES").is_ok() {
        ProptestConfig::default()
    } else {
        ProptestConfig::with_cases(48)
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..20_000)) {
        let r = steward_explain::explain_text(&data);
        for f in &r.findings {
            prop_assert!(f.line_no >= 1 && f.line_no <= r.lines);
            prop_assert!(f.line.len() <= 4 * 1000);
        }
        prop_assert!(r.unrecognised.len() <= 500);
    }

    #[test]
    fn signature_fragments_in_any_order_never_panic(data in fragments()) {
        let r = steward_explain::explain_text(&data);
        for f in &r.findings {
            prop_assert!(f.line_no >= 1 && f.line_no <= r.lines);
        }
        let _ = r.one_line();
    }
}
