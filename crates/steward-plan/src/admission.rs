use serde::Serialize;
use steward_config::{ByteSize, Config};
use steward_host::MemInfo;

/// One reason the config does not fit, written for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The config key at fault, e.g. `services.train.memory`.
    pub key: String,
    pub message: String,
}

/// Checks every service's memory limit against the host's memory.
pub fn admit(config: &Config, mem: &MemInfo) -> Vec<Refusal> {
    let total = ByteSize(mem.total);
    config
        .services
        .values()
        .filter_map(|svc| {
            let limit = svc.memory?;
            (limit.bytes() > mem.total).then(|| Refusal {
                key: format!("services.{}.memory", svc.name),
                message: format!(
                    "{} is more than this host's memory, {} (MemTotal); the limit could never be reached, \
                     so the host would run out first. Lower it below {}",
                    limit.both(),
                    total.both(),
                    total.binary()
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_above_memtotal_is_refused_in_both_units() {
        let cfg = steward_config::parse(
            "[services.big]\ncommand = [\"true\"]\nmemory = \"500GiB\"\n[services.small]\ncommand = [\"true\"]\nmemory = \"1GiB\"\n",
            std::path::Path::new("/x/steward.toml"),
        )
        .unwrap();
        let mem = MemInfo {
            total: 64 << 30,
            available: 60 << 30,
            swap_total: 0,
            swap_free: 0,
        };
        let refusals = admit(&cfg, &mem);
        assert_eq!(refusals.len(), 1);
        assert_eq!(refusals[0].key, "services.big.memory");
        assert!(
            refusals[0].message.contains("500.00 GiB (536.87 GB)"),
            "{}",
            refusals[0].message
        );
        assert!(
            refusals[0].message.contains("64.00 GiB (68.72 GB)"),
            "{}",
            refusals[0].message
        );
    }
}
