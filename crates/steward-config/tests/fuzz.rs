//! The config parser on arbitrary input: TOML fragments of steward's own keys in any order
//! and with any values, and raw bytes. It answers Ok or a located error; it never panics.
//! A longer run: `PROPTEST_CASES=100000 cargo test --release -p steward-config --test fuzz`.

use proptest::prelude::*;
use std::path::Path;

fn config() -> ProptestConfig {
    if std::env::var("PROPTEST_CASES").is_ok() {
        ProptestConfig::default()
    } else {
        ProptestConfig::with_cases(64)
    }
}

fn fragment() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("command"),
        Just("memory"),
        Just("memory_swap"),
        Just("cpus"),
        Just("replicas"),
        Just("gpus"),
        Just("replicas_per_gpu"),
        Just("backoff"),
        Just("health"),
        Just("depends_on"),
        Just("stop_signal"),
        Just("stop_timeout"),
        Just("log"),
        Just("pids_max"),
        Just("oom_score_adj"),
        Just("cpus_per_replica"),
        Just("gpu_memory"),
        Just("restart"),
        Just("shell"),
        Just("env"),
        Just("mode"),
        Just("queue"),
        Just("worker"),
        Just("inputs"),
        Just("timeout"),
        Just("listen"),
        Just("api_keys"),
        Just("routes"),
        Just("backends"),
        Just("url"),
        Just("max_attempts"),
    ];
    let value = prop_oneof![
        Just("\"12G\"".to_string()),
        Just("\"8388608TiB\"".to_string()),
        Just("\"18446744073709551615B\"".to_string()),
        Just("\"0-4294967295\"".to_string()),
        Just("\"0-999999999\"".to_string()),
        Just("100000000".to_string()),
        Just("-1".to_string()),
        Just("\"1\\u0000\"".to_string()),
        Just("[\"sleep\", \"1\"]".to_string()),
        Just("\"all\"".to_string()),
        Just("{ initial = \"0s\", max = \"0s\" }".to_string()),
        Just("\"999999999999999999999h\"".to_string()),
        Just("\"é\"".to_string()),
        Just("true".to_string()),
        Just("{ http = \"http://127.0.0.1:0/\" }".to_string()),
        Just("\"SIGKILL\"".to_string()),
        Just("18446744073709551616".to_string()),
        Just("1e308".to_string()),
        Just("[]".to_string()),
        "\"\\PC{0,12}\"",
    ];
    let line = (key, value).prop_map(|(k, v)| format!("{k} = {v}\n"));
    let header = prop_oneof![
        Just("[services.a]\n".to_string()),
        Just("[services.b]\n".to_string()),
        Just("[pipelines.p]\n".to_string()),
        Just("[gateway]\n".to_string()),
        Just("[[gateway.routes]]\n".to_string()),
        Just("[queue]\n".to_string()),
        Just("[services.a.health]\n".to_string()),
    ];
    prop_oneof![line, header]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fragments_in_any_order_never_panic(parts in prop::collection::vec(fragment(), 0..30)) {
        let text = parts.concat();
        let _ = steward_config::parse(&text, Path::new("/srv/steward.toml"));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2000)) {
        let text = String::from_utf8_lossy(&data);
        let _ = steward_config::parse(&text, Path::new("/srv/steward.toml"));
    }
}

proptest! {
    #![proptest_config(config())]

    /// Any number with any unit: a size, or an error; never a panic, never a wrap.
    #[test]
    fn sizes_of_any_magnitude_parse_or_refuse(
        digits in "[0-9]{1,45}",
        frac in prop::option::of("[0-9]{1,6}"),
        unit in prop_oneof![Just("B"), Just("kB"), Just("MB"), Just("GB"), Just("TB"), Just("KiB"), Just("MiB"), Just("GiB"), Just("TiB"), Just("Gi"), Just("G"), Just("x")],
    ) {
        let text = match &frac {
            Some(f) => format!("{digits}.{f}{unit}"),
            None => format!("{digits}{unit}"),
        };
        if let Ok(size) = text.parse::<steward_config::ByteSize>() {
            prop_assert!(size.0 <= 1 << 60, "{text} gave {}", size.0);
            let _ = size.both();
        }
    }

    #[test]
    fn durations_of_any_magnitude_parse_or_refuse(n in any::<u64>(), unit in prop_oneof![Just("ms"), Just("s"), Just("m"), Just("h"), Just("d"), Just("y")]) {
        let toml = format!("[services.a]\ncommand = [\"x\"]\nstop_timeout = \"{n}{unit}\"\n");
        if let Ok(c) = steward_config::parse(&toml, Path::new("/srv/steward.toml")) {
            let d = c.services["a"].stop_timeout.0;
            prop_assert!(d <= std::time::Duration::from_secs(100 * 365 * 24 * 3600));
            // Times computed from it never overflow.
            prop_assert!(std::time::Instant::now().checked_add(d).is_some());
        }
    }

    #[test]
    fn cpu_lists_of_any_range_parse_or_refuse(a in any::<u64>(), b in any::<u64>(), c in any::<u32>()) {
        for text in [format!("{a}-{b}"), format!("{c}"), format!("{a},{c}-{b}")] {
            if let Ok(list) = text.parse::<steward_config::CpuList>() {
                prop_assert!(list.0.iter().all(|&n| n <= 4095));
                prop_assert!(list.0.len() <= 4096);
            }
        }
    }
}
