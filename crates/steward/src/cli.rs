//! The command line: every subcommand and flag, with the help text `steward --help` prints.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "steward",
    version,
    about = "Runs a GPU node's ML workloads: supervises services within hard limits, restarts them with backoff, and says in one line why each one ended.",
    after_help = "Start with `steward up -f steward.toml`, then `steward ps`. Examples live in examples/."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct Target {
    /// The config file; its state dir holds the agent's socket, logs and events.
    #[arg(
        short = 'f',
        long = "file",
        env = "STEWARD_CONFIG",
        default_value = "steward.toml"
    )]
    pub file: PathBuf,
    /// Talk to the agent of this state dir instead of the one the config names.
    #[arg(long, env = "STEWARD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Options of the commands that read the node.
#[derive(Debug, Args, Clone)]
pub struct NodeArgs {
    /// The config file; optional for `host` and `doctor`.
    #[arg(short = 'f', long = "file", env = "STEWARD_CONFIG")]
    pub file: Option<PathBuf>,
    /// Read host facts under DIR (proc/…, sys/…, nvidia-smi-q.xml) instead of the live host.
    #[arg(long, value_name = "DIR")]
    pub sysroot: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the agent in the foreground and every service of the config. Ctrl-C stops them all.
    Up {
        #[command(flatten)]
        target: Target,
        /// Run the agent in the background; its own log goes to STATE_DIR/agent.log.
        #[arg(short, long)]
        detach: bool,
        /// Start even when the plan does not fit this host (memory, GPU memory, CPUs).
        #[arg(long)]
        force: bool,
        /// Read host facts under DIR (proc/…, sys/…) instead of the live host.
        #[arg(long, value_name = "DIR")]
        sysroot: Option<PathBuf>,
    },
    /// Print what steward knows about this node: memory, CPUs, GPUs, cgroups, core dumps, disk, DNS, zombies.
    Host {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Print where every replica goes (GPU, CPUs, memory) and whether it all fits. Exits 1 when it does not.
    Plan {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Check the node for what pages people at night; one line per check, each with its fix. Exits 1 on any fail.
    Doctor {
        #[command(flatten)]
        node: NodeArgs,
        /// Do not ask the DNS resolvers (the only check that sends traffic).
        #[arg(long)]
        no_dns: bool,
    },
    /// Stop every service, then the agent.
    Down {
        #[command(flatten)]
        target: Target,
    },
    /// Show each service: state, pid, uptime, restarts, last exit, memory against its limit.
    Ps {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Start a stopped service.
    Start {
        service: String,
        #[command(flatten)]
        target: Target,
    },
    /// Stop a service and keep it stopped; returns once none of its processes is left.
    Stop {
        service: String,
        #[command(flatten)]
        target: Target,
    },
    /// Stop a service and start it again at once.
    Restart {
        service: String,
        #[command(flatten)]
        target: Target,
    },
    /// Print a service's output (stdout and stderr, in order). Works without an agent.
    Logs {
        service: String,
        /// The config file (`-f` here means follow, as in `tail -f`).
        #[arg(long = "file", env = "STEWARD_CONFIG", default_value = "steward.toml")]
        file: PathBuf,
        #[arg(long, env = "STEWARD_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// Only the last N lines.
        #[arg(short = 'n', long)]
        tail: Option<usize>,
        /// Keep printing new output as it is written.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Check a config file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config and print it resolved: defaults filled in, paths absolute.
    Check {
        #[arg(default_value = "steward.toml")]
        file: PathBuf,
        /// Print the resolved config as JSON.
        #[arg(long)]
        json: bool,
    },
}
