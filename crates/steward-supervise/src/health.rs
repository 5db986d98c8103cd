//! Health: the state machine (pure, compose's semantics) and the three probes.

use crate::reaper::Reaper;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use steward_api::Health;
use steward_config::{HealthCheck, Probe};
use steward_net::Verdict;

/// One probe's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    Pass,
    /// Alive but not ready yet (HTTP 503, as llama.cpp answers while loading a model).
    NotReady(String),
    Fail(String),
}

/// What a probe result changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthUpdate {
    /// The new state, when it changed.
    pub changed: Option<Health>,
    /// Liveness failures reached: restart the process.
    pub restart: bool,
}

/// One run's health, fed probe results in order.
#[derive(Debug)]
pub struct HealthTracker {
    pub state: Health,
    failures: u32,
    started: Instant,
    start_period: Duration,
    retries: u32,
    liveness_failures: Option<u32>,
    was_healthy: bool,
    pub last_error: Option<String>,
}

impl HealthTracker {
    pub fn new(check: &HealthCheck, liveness_failures: Option<u32>, started: Instant) -> Self {
        HealthTracker {
            state: Health::Starting,
            failures: 0,
            started,
            start_period: check.start_period.0,
            retries: check.retries,
            liveness_failures,
            was_healthy: false,
            last_error: None,
        }
    }

    pub fn record(&mut self, now: Instant, result: ProbeResult) -> HealthUpdate {
        let before = self.state;
        let mut restart = false;
        match result {
            ProbeResult::Pass => {
                self.failures = 0;
                self.was_healthy = true;
                self.last_error = None;
                self.state = Health::Healthy;
            }
            // Before the first success, "not ready" is a normal part of starting.
            ProbeResult::NotReady(why) if !self.was_healthy => self.last_error = Some(why),
            ProbeResult::NotReady(why) | ProbeResult::Fail(why) => {
                self.last_error = Some(why);
                let in_grace =
                    !self.was_healthy && now.duration_since(self.started) < self.start_period;
                if !in_grace {
                    self.failures += 1;
                    if self.failures >= self.retries {
                        self.state = Health::Unhealthy;
                    }
                    if self.was_healthy
                        && self.liveness_failures.is_some_and(|n| self.failures >= n)
                    {
                        restart = true;
                    }
                }
            }
        }
        HealthUpdate {
            changed: (self.state != before).then_some(self.state),
            restart,
        }
    }
}

/// Where an exec probe runs: the instance's working directory and environment, as a
/// probe inside a container sees the container's.
#[derive(Debug, Clone, Default)]
pub struct ProbeEnv {
    pub cwd: std::path::PathBuf,
    pub env: std::collections::BTreeMap<String, String>,
}

/// Runs one probe, bounded by the check's timeout.
pub async fn probe(check: &HealthCheck, reaper: &Reaper, penv: &ProbeEnv) -> ProbeResult {
    let timeout = check.timeout.0;
    let run = async {
        match &check.probe {
            Probe::Http {
                host,
                port,
                path,
                url,
            } => http(host, *port, path, url, timeout).await,
            Probe::Tcp { address } => {
                match tokio::net::TcpStream::connect(address.as_str()).await {
                    Ok(_) => ProbeResult::Pass,
                    Err(e) => ProbeResult::Fail(format!("tcp {address}: {e}")),
                }
            }
            Probe::Exec { argv } => exec(argv, reaper, timeout, penv).await,
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => ProbeResult::Fail(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

/// `GET url` by the one rule every prober of steward follows (2xx up, 503 not ready yet,
/// anything else down), within the check's timeout.
async fn http(host: &str, port: u16, path: &str, url: &str, timeout: Duration) -> ProbeResult {
    match steward_net::get_status(host, port, path, timeout).await {
        Err(e) => ProbeResult::Fail(format!("GET {url}: {e}")),
        Ok(status) => match steward_net::verdict(status) {
            Verdict::Up => ProbeResult::Pass,
            Verdict::Loading => {
                ProbeResult::NotReady(format!("GET {url}: {status} (not ready yet)"))
            }
            Verdict::Down(why) => ProbeResult::Fail(format!("GET {url}: {why}")),
        },
    }
}

async fn exec(argv: &[String], reaper: &Reaper, timeout: Duration, penv: &ProbeEnv) -> ProbeResult {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(&penv.cwd)
        .envs(&penv.env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let (pid, exit) = match reaper.spawn(&mut cmd) {
        Ok(x) => x,
        Err(e) => return ProbeResult::Fail(format!("{}: {e}", argv[0])),
    };
    match tokio::time::timeout(timeout, exit).await {
        Ok(Ok(r)) => match r.outcome {
            crate::classify::WaitOutcome::Exited(0) => ProbeResult::Pass,
            crate::classify::WaitOutcome::Exited(code) => {
                ProbeResult::Fail(format!("{} exited {code}", argv.join(" ")))
            }
            crate::classify::WaitOutcome::Signaled(sig) => {
                ProbeResult::Fail(format!("{} killed by signal {sig}", argv.join(" ")))
            }
        },
        Ok(Err(_)) => ProbeResult::Fail("the reaper is gone".into()),
        Err(_) => {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            ProbeResult::Fail(format!(
                "{} did not finish within {}",
                argv.join(" "),
                humantime::format_duration(timeout)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward_config::HumanDuration;

    fn check(retries: u32, start_period: u64) -> HealthCheck {
        HealthCheck {
            probe: Probe::Tcp {
                address: "127.0.0.1:1".into(),
            },
            interval: HumanDuration::secs(1),
            timeout: HumanDuration::secs(1),
            retries,
            start_period: HumanDuration::secs(start_period),
            start_interval: HumanDuration::millis(100),
        }
    }

    #[test]
    fn not_ready_then_pass_is_starting_then_healthy() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new(&check(2, 0), None, t0);
        for _ in 0..5 {
            assert_eq!(
                h.record(t0, ProbeResult::NotReady("503".into())).changed,
                None
            );
        }
        assert_eq!(h.state, Health::Starting);
        assert_eq!(
            h.record(t0, ProbeResult::Pass).changed,
            Some(Health::Healthy)
        );
    }

    #[test]
    fn failures_in_the_start_period_do_not_count() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new(&check(1, 10), None, t0);
        assert_eq!(
            h.record(t0 + Duration::from_secs(5), ProbeResult::Fail("x".into()))
                .changed,
            None
        );
        assert_eq!(
            h.record(t0 + Duration::from_secs(11), ProbeResult::Fail("x".into()))
                .changed,
            Some(Health::Unhealthy)
        );
    }

    #[test]
    fn liveness_restarts_only_after_having_been_healthy() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new(&check(1, 0), Some(3), t0);
        assert!(!h.record(t0, ProbeResult::Fail("x".into())).restart);
        h.record(t0, ProbeResult::Pass);
        assert_eq!(
            h.record(t0, ProbeResult::Fail("a".into())).changed,
            Some(Health::Unhealthy)
        );
        assert!(!h.record(t0, ProbeResult::Fail("b".into())).restart);
        let u = h.record(t0, ProbeResult::Fail("c".into()));
        assert!(u.restart);
        assert_eq!(h.last_error.as_deref(), Some("c"));
    }
}
