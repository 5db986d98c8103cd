//! `up --detach`: the agent in the background, in its own session.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};
use steward_api::{Request, StateDirLock};
use steward_config::Config;

/// `up --detach`: starts the agent in its own session, waits until its socket answers,
/// and reports where its log is.
pub fn run_detached(
    config: &Config,
    config_arg: &Path,
    state_dir_flag: bool,
    sysroot: Option<&Path>,
    force: bool,
) -> Result<()> {
    std::fs::create_dir_all(config.state_dir.path())
        .with_context(|| format!("cannot create the state dir {}", config.state_dir))?;
    // Refuse early, with the same message as the foreground agent would give.
    drop(StateDirLock::acquire(&config.state_dir)?);
    super::preflight::preflight(config, sysroot, force)?;
    let log_path = config.state_dir.agent_log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the steward binary to re-run")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("up")
        .arg("-f")
        .arg(std::path::absolute(config_arg).unwrap_or_else(|_| config_arg.to_path_buf()));
    if state_dir_flag {
        cmd.arg("--state-dir").arg(config.state_dir.path());
    }
    if force {
        cmd.arg("--force");
    }
    if let Some(root) = sysroot {
        cmd.arg("--sysroot")
            .arg(std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()));
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().context("cannot start the background agent")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut client) = steward_api::Client::connect(&config.state_dir) {
            if client.request(&Request::Ping).is_ok() {
                println!(
                    "steward agent running in the background (pid {}); its log: {}",
                    child.id(),
                    log_path.display()
                );
                return Ok(());
            }
        }
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let last = tail.lines().rev().take(5).collect::<Vec<_>>();
            bail!(
                "the background agent exited ({status}) before it was ready; last lines of {}:\n{}",
                log_path.display(),
                last.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the background agent did not answer within 30s; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
