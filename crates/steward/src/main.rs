//! `steward`: the CLI and the wiring of the agent. Everything else lives in the
//! `steward-*` crates, one per box of the design.

mod agent;
mod cli;
mod commands;
mod explain_cmd;
mod explain_service;
mod fmt;
mod import_cmd;
mod node;
mod nodes_cmd;
mod progress_bar;
mod queue_cmd;
mod report;
mod store;
mod target;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let command = cli::Cli::parse().command();
    if !matches!(command, cli::Command::Up { .. }) {
        // A CLI command piped into `head` should end quietly, as other Unix tools do. The
        // agent keeps SIGPIPE ignored: a client that hangs up must not kill it.
        // SAFETY: restoring a default signal disposition before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let code = match commands::run(command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("steward: error: {}", one_line(&err));
            if let Some(hint) = hint_for(&err) {
                eprintln!("  hint: {hint}");
            }
            ExitCode::from(2)
        }
    };
    power_off_if_machine_init();
    code
}

/// The init of a pid namespace's first process inode: the machine's own, not a container's.
const INITIAL_PID_NS: u64 = 0xEFFF_FFFC;

/// As the machine's PID 1 (a VM's or a host's `/init`, not a container's), exiting would
/// panic the kernel: the file systems are synced and the machine powered off instead. A
/// container's init just exits, so that its runtime sees its exit status.
fn power_off_if_machine_init() {
    use std::os::unix::fs::MetadataExt;
    if std::process::id() != 1 {
        return;
    }
    let machine = std::fs::metadata("/proc/self/ns/pid").is_ok_and(|m| m.ino() == INITIAL_PID_NS);
    if !machine {
        return;
    }
    eprintln!("steward: the machine's init is done: syncing and powering off");
    // SAFETY: sync and reboot take no pointers; reboot only returns on failure.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
}

/// The error and its causes on one line, without repeating a cause that the outer
/// message already quotes.
fn one_line(err: &anyhow::Error) -> String {
    steward_net::one_line(err.as_ref())
}

fn hint_for(err: &anyhow::Error) -> Option<&'static str> {
    let text = err.to_string();
    if text.contains("cannot read config") {
        Some("pass the config with -f FILE, or run steward in the folder that holds steward.toml")
    } else {
        None
    }
}
