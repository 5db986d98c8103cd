//! `/metrics`: the services as the agent sees them at scrape time, in the OpenMetrics
//! text format (one registry; a collector reads the statuses on each scrape, so nothing
//! is kept twice). Labels: `service` (the service's name) and `replica`.

use crate::AgentView;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use steward_api::{ServiceState, ServiceStatus};

const STATES: [ServiceState; 8] = [
    ServiceState::Stopped,
    ServiceState::Waiting,
    ServiceState::Running,
    ServiceState::Backoff,
    ServiceState::CrashLoop,
    ServiceState::Stopping,
    ServiceState::Exited,
    ServiceState::Failed,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Instance {
    service: String,
    replica: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InState {
    service: String,
    replica: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Info {
    version: String,
}

struct Services(Arc<dyn AgentView>);

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Services")
    }
}

fn instance(s: &ServiceStatus) -> Instance {
    Instance {
        service: s.service.clone(),
        replica: s.replica.to_string(),
    }
}

/// One gauge per instance, for the instances `value` gives a value.
fn gauges(
    encoder: &mut DescriptorEncoder,
    statuses: &[ServiceStatus],
    name: &str,
    help: &str,
    value: impl Fn(&ServiceStatus) -> Option<f64>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    for s in statuses {
        if let Some(v) = value(s) {
            let labels = instance(s);
            ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

impl Collector for Services {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let statuses = self.0.services();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        {
            let mut family = encoder.encode_descriptor(
                "steward_service_state",
                "1 for the state each service instance is in, 0 for the others.",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for s in &statuses {
                for state in STATES {
                    let labels = InState {
                        service: s.service.clone(),
                        replica: s.replica.to_string(),
                        state: state.to_string(),
                    };
                    ConstGauge::new(i64::from(s.state == state))
                        .encode(family.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "steward_service_restarts",
                "Restarts of each service instance since the agent started.",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for s in &statuses {
                let labels = instance(s);
                ConstCounter::new(u64::from(s.restarts)).encode(family.encode_family(&labels)?)?;
            }
        }
        gauges(
            &mut encoder,
            &statuses,
            "steward_service_ready",
            "1 when the instance is up: running and ready, or a one-shot that exited 0.",
            |s| Some(f64::from(u8::from(s.is_up()))),
        )?;
        gauges(
            &mut encoder,
            &statuses,
            "steward_service_start_time_seconds",
            "When the instance's current process started, in seconds since the epoch.",
            |s| s.uptime_ms.map(|u| now - u as f64 / 1000.0),
        )?;
        gauges(
            &mut encoder,
            &statuses,
            "steward_service_memory_bytes",
            "Memory the instance uses now (its cgroup's, or its processes' RSS).",
            |s| s.memory_used.map(|m| m as f64),
        )?;
        gauges(
            &mut encoder,
            &statuses,
            "steward_service_memory_limit_bytes",
            "The instance's memory limit.",
            |s| s.memory_limit.map(|m| m as f64),
        )?;
        let mut family = encoder.encode_descriptor(
            "steward_agent_info",
            "The agent's version.",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        let labels = Info {
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        ConstGauge::new(1).encode(family.encode_family(&labels)?)?;
        Ok(())
    }
}

/// The registry `/metrics` encodes.
pub fn registry(view: Arc<dyn AgentView>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Services(view)));
    registry
}

/// The registry as OpenMetrics text.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

/// OpenMetrics text as Prometheus' classic text format (0.0.4), for scrapers that do not
/// ask for OpenMetrics (promtool, older Prometheus, curl): a counter's HELP and TYPE name
/// its `_total` series, and there is no `# UNIT` or `# EOF`.
pub fn classic(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|l| l.strip_suffix(" counter"))
        {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{suffix} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::classic;

    #[test]
    fn a_counters_help_and_type_name_its_total_series_and_eof_goes() {
        let om = "# HELP jobs Jobs.\n# TYPE jobs counter\njobs_total 3\n# HELP up Up.\n# TYPE up gauge\nup 1\n# EOF\n";
        assert_eq!(
            classic(om),
            "# HELP jobs_total Jobs.\n# TYPE jobs_total counter\njobs_total 3\n# HELP up Up.\n# TYPE up gauge\nup 1\n"
        );
    }
}
