//! `/metrics`: one scrape's snapshot of the agent (services, GPUs, queues, the agent
//! itself) encoded in the OpenMetrics text format, the gateway's series after it when the
//! gateway runs inside the agent. Labels: `service` and `replica` for an instance, as the
//! config names them; `gpu` and `UUID` as DCGM names them.

use crate::family::{family, Labels};
use crate::jobs_metrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use steward_api::ServiceGpuMemory;
use steward_api::{AgentInfo, ServiceState, ServiceStatus};
use steward_events::Counts;

/// What one scrape reads.
#[derive(Debug)]
pub struct Scrape {
    pub services: Vec<ServiceStatus>,
    pub agent: AgentInfo,
    pub cgroup_mode: String,
    pub counts: Counts,
    pub gpu: Vec<ServiceGpuMemory>,
    /// Each queue's jobs by state.
    pub queues: Vec<(String, steward_queue::Counts)>,
}

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

/// An instance's labels; `instance` is the name events use (`svc` or `svc#i`).
fn of_instance(instance: &str) -> Labels {
    let (service, replica) = instance.split_once('#').unwrap_or((instance, "0"));
    vec![
        ("service", service.to_string()),
        ("replica", replica.to_string()),
    ]
}

fn of(s: &ServiceStatus) -> Labels {
    vec![
        ("service", s.service.clone()),
        ("replica", s.replica.to_string()),
    ]
}

fn gauge(v: f64) -> ConstGauge<f64> {
    ConstGauge::new(v)
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let s = &self.services;
        family(
            &mut e,
            "steward_service_state",
            "1 for the state each service instance is in, 0 for the others.",
            MetricType::Gauge,
            s.iter().flat_map(|s| {
                STATES.iter().map(move |&st| {
                    let mut l = of(s);
                    l.push(("state", st.to_string()));
                    (l, ConstGauge::new(i64::from(s.state == st)))
                })
            }),
        )?;
        family(
            &mut e,
            "steward_service_ready",
            "1 when the instance is up: running and ready, or a one-shot that exited 0.",
            MetricType::Gauge,
            s.iter()
                .map(|s| (of(s), ConstGauge::new(i64::from(s.is_up())))),
        )?;
        family(
            &mut e,
            "steward_service_restarts",
            "Restarts of each service instance since the agent started.",
            MetricType::Counter,
            s.iter()
                .map(|s| (of(s), ConstCounter::new(u64::from(s.restarts)))),
        )?;
        family(&mut e, "steward_service_exits", "Process exits of each instance since the agent started, by how they ended (exited, signaled, oom_killed, timed_out, killed_unhealthy, spawn_failed, stopped, ...).", MetricType::Counter,
            self.counts.exits.iter().map(|((inst, class), n)| {
                let mut l = of_instance(inst);
                l.push(("class", class.clone()));
                (l, ConstCounter::new(*n))
            }))?;
        family(&mut e, "steward_service_findings", "Lines of each instance's running output that matched a cause or a fatal signature, by category (counted as reported: a repeat is counted at its next minute's report).", MetricType::Counter,
            self.counts.findings.iter().map(|((inst, category), n)| {
                let mut l = of_instance(inst);
                l.push(("category", category.clone()));
                (l, ConstCounter::new(*n))
            }))?;
        family(&mut e, "steward_service_oom_kills", "Exits of each instance that were OOM kills (the kernel's in its cgroup, or steward's RSS watchdog).", MetricType::Counter,
            s.iter().map(|s| {
                let n = self.counts.oom_kills.get(&s.name).copied().unwrap_or(0);
                (of(s), ConstCounter::new(n))
            }))?;
        family(
            &mut e,
            "steward_service_start_time_seconds",
            "When the instance's current process started, in seconds since the epoch.",
            MetricType::Gauge,
            s.iter()
                .filter_map(|s| s.uptime_ms.map(|u| (of(s), gauge(now - u as f64 / 1000.0)))),
        )?;
        family(
            &mut e,
            "steward_service_memory_bytes",
            "Memory the instance uses now (its cgroup's, or its processes' RSS).",
            MetricType::Gauge,
            s.iter()
                .filter_map(|s| s.memory_used.map(|m| (of(s), gauge(m as f64)))),
        )?;
        family(
            &mut e,
            "steward_service_memory_limit_bytes",
            "The instance's memory limit.",
            MetricType::Gauge,
            s.iter()
                .filter_map(|s| s.memory_limit.map(|m| (of(s), gauge(m as f64)))),
        )?;
        family(&mut e, "steward_service_cpu_seconds", "CPU time (user and system) the instance's running processes have used, in seconds; it starts again from 0 when the instance restarts.", MetricType::Counter,
            s.iter().filter_map(|s| s.cpu_seconds.map(|c| (of(s), ConstCounter::new(c)))))?;
        family(&mut e, "steward_service_gpu_memory_bytes", "GPU memory the instance's processes hold on each GPU (NVML's per-process list, summed).", MetricType::Gauge,
            self.gpu.iter().map(|g| {
                let mut l = of_instance(&g.instance);
                l.push(("gpu", g.gpu.to_string()));
                l.push(("UUID", g.uuid.clone()));
                (l, gauge(g.bytes as f64))
            }))?;
        family(&mut e, "steward_gpu_xid_errors", "Xid errors the NVIDIA driver logged for each GPU since the agent started, by code (a counter; DCGM's XID gauge holds only the last one).", MetricType::Counter,
            self.counts.gpu_xid.iter().map(|((uuid, xid), n)| {
                (vec![("UUID", uuid.clone()), ("xid", xid.to_string())], ConstCounter::new(*n))
            }))?;
        jobs_metrics::encode(&mut e, &self.queues, &self.counts)?;
        family(
            &mut e,
            "steward_agent_info",
            "The agent's version and how it enforces limits.",
            MetricType::Gauge,
            [(
                vec![
                    ("version", env!("CARGO_PKG_VERSION").to_string()),
                    ("cgroups", self.cgroup_mode.clone()),
                ],
                ConstGauge::new(1),
            )],
        )?;
        family(
            &mut e,
            "steward_agent_orphans_reaped",
            "Orphaned processes (not started by steward directly) the agent reaped.",
            MetricType::Counter,
            [(Labels::new(), ConstCounter::new(self.agent.orphans_reaped))],
        )?;
        Ok(())
    }
}

/// The scrape, and the gateway's series after it, as OpenMetrics text (one `# EOF`).
pub fn encode(scrape: Scrape, gateway: Option<&str>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
    }
    if let Some(g) = gateway {
        let body = out.strip_suffix("# EOF\n").unwrap_or(&out).to_string();
        out = body + g;
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
