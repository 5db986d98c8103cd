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

/// Strings shaped like the start of a timed log line, with any characters where digits
/// and separators should be.
fn time_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("2026-03-02T10:14:07".to_string()),
        Just("2026-03-02 10:14:0".to_string()),
        Just("[2024-01-19 00:48:01 +0000] ".to_string()),
        Just("[Tue Mar  3 02:11:45 2026]".to_string()),
        Just("Mar 04 03:20:11 ".to_string()),
        Just("{\"log\":\"x\",\"time\":\"".to_string()),
        Just("é".to_string()),
        Just("\u{1F600}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        "\\PC{0,8}",
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn line_times_of_any_text_never_panic(line in time_like(), year in -10_000i32..10_000) {
        let _ = steward_explain::line_time(&line, year);
    }

    #[test]
    fn since_over_arbitrary_lines_never_panics(
        lines in prop::collection::vec(prop_oneof![
            time_like().prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..300),
        ], 0..50),
        hours in 0u64..1_000_000,
    ) {
        let now = std::time::SystemTime::now();
        let cutoff = steward_explain::parse_since(&format!("{hours}h"), now).ok();
        let mut since = steward_explain::Since::new(cutoff, now);
        for l in &lines {
            let _ = since.keep(l);
        }
    }

    #[test]
    fn parse_since_of_any_text_never_panics(s in "\\PC{0,40}") {
        let _ = steward_explain::parse_since(&s, std::time::SystemTime::now());
    }
}
