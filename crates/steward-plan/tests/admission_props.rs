//! Admission sums over extreme values: a plan is admitted exactly when the limits (sized
//! up to the largest steward takes, times up to the most replicas) plus the reserve fit
//! MemTotal, computed here in u128; nothing wraps and nothing panics.

use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use steward_host::{GpuInventory, MemInfo};
use steward_plan::{plan, AdmissionInputs};

fn config() -> ProptestConfig {
    if std::env::var("PROPTEST_CASES").is_ok() {
        ProptestConfig::default()
    } else {
        ProptestConfig::with_cases(64)
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn admitted_exactly_when_the_u128_sum_fits(
        services in prop::collection::vec((0u64..=(1 << 60), 1u32..=1024), 1..6),
        total in prop_oneof![Just(0u64), Just(u64::MAX), 0u64..=(1 << 62)],
        reserve in prop::option::of(4u64 << 20..=(1 << 60)),
    ) {
        let mut toml = String::new();
        if let Some(r) = reserve {
            toml.push_str(&format!("reserve_memory = \"{r}B\"\n"));
        }
        for (i, (mem, replicas)) in services.iter().enumerate() {
            let mem = (*mem).max(4 << 20);
            toml.push_str(&format!("[services.s{i}]\ncommand = [\"x\"]\nmemory = \"{mem}B\"\nreplicas = {replicas}\n"));
        }
        let cfg = steward_config::parse(&toml, Path::new("/srv/steward.toml")).unwrap();
        let mem = MemInfo { total, available: total, swap_total: 0, swap_free: 0 };
        let gpus = GpuInventory::fake(0);
        let peaks = BTreeMap::new();
        let input = AdmissionInputs { mem: Some(&mem), cpu: None, gpus: &gpus, observed_peaks: &peaks };
        let p = plan(&cfg, &input).unwrap();
        let asked: u128 = services.iter().map(|(m, n)| u128::from((*m).max(4 << 20)) * u128::from(*n)).sum();
        let reserve = reserve.unwrap_or_else(|| steward_plan::default_reserve(total));
        let fits = asked + u128::from(reserve) <= u128::from(total);
        prop_assert_eq!(p.admission.admitted, fits, "asked {} + reserve {} vs {}", asked, reserve, total);
        let _ = steward_plan::render(&p);
    }
}
