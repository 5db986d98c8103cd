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
    /// The config file (default: ./steward.toml). Also accepted after the command.
    #[arg(
        short = 'f',
        long = "file",
        env = "STEWARD_CONFIG",
        value_name = "FILE"
    )]
    pub file: Option<PathBuf>,
    /// The state dir to use instead of the one the config names. Also accepted after the command.
    #[arg(long, env = "STEWARD_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The config (and state dir) a command acts on: given before the command, after it, or
/// after its subcommand (`steward queue add q in -f x.toml`), as kubectl and compose
/// users type them.
#[derive(Debug, Args, Clone, Default)]
pub struct Target {
    /// The config file; its state dir holds the agent's socket, logs and events.
    #[arg(short = 'f', long = "file", global = true, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Use this state dir instead of the one the config names: `up` and `run` run the agent
    /// there, the other commands talk to the agent there.
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

impl Target {
    /// The config file: `-f`, or `steward.toml` here.
    pub fn file(&self) -> PathBuf {
        self.file
            .clone()
            .unwrap_or_else(|| PathBuf::from("steward.toml"))
    }

    /// Fills in what was given before the command (or in the environment).
    fn or(&mut self, file: &Option<PathBuf>, state_dir: &Option<PathBuf>) {
        if self.file.is_none() {
            self.file.clone_from(file);
        }
        if self.state_dir.is_none() {
            self.state_dir.clone_from(state_dir);
        }
    }
}

/// Options of the commands that read the node.
#[derive(Debug, Args, Clone)]
pub struct NodeArgs {
    /// The config file; optional for `host` and `doctor`.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
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
    /// Run the config's pipelines until every queue is drained, with a progress bar, then
    /// print what succeeded and what was quarantined and why. Exits 0 only when no job was lost.
    Run {
        #[command(flatten)]
        target: Target,
        /// Stop once every pipeline's queue is drained (the only mode of `run`; `up` keeps draining).
        #[arg(long)]
        until_empty: bool,
        /// Start even when the plan does not fit this host (memory, GPU memory, CPUs).
        #[arg(long)]
        force: bool,
        /// Read host facts under DIR (proc/…, sys/…) instead of the live host.
        #[arg(long, value_name = "DIR")]
        sysroot: Option<PathBuf>,
    },
    /// Run only the config's [gateway] in the foreground (`up` runs it beside the services).
    Gateway {
        #[command(flatten)]
        target: Target,
    },
    /// Read the config again: check it as `up` would, then start new services, stop
    /// removed ones and restart changed ones. A bad config changes nothing. (SIGHUP to the
    /// agent does the same, unless it is a container's PID 1.)
    Reload {
        #[command(flatten)]
        target: Target,
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
        /// Exit 1 unless every service is up (running and ready, or exited 0), naming what
        /// is not; for readiness probes.
        #[arg(long)]
        ready: bool,
    },
    /// Start a stopped service (its stopped dependencies first).
    Start {
        /// The service, or one replica of it (`web#1`).
        service: String,
        #[command(flatten)]
        target: Target,
    },
    /// Stop a service and keep it stopped; returns once none of its processes is left.
    Stop {
        /// The service, or one replica of it (`web#1`).
        service: String,
        #[command(flatten)]
        target: Target,
    },
    /// Stop a service and start it again at once (replicas one at a time).
    Restart {
        /// The service, or one replica of it (`web#1`).
        service: String,
        #[command(flatten)]
        target: Target,
    },
    /// Print a service's output (stdout and stderr, in order). Works without an agent.
    Logs {
        /// The service, a replica (`web#1`) or a pipeline slot (`ocr#0`).
        service: String,
        /// The config file (`-f` here means follow, as in `tail -f`; give the file as
        /// `--file`, or `-f FILE` before `logs`).
        #[arg(long = "file", value_name = "FILE")]
        file: Option<PathBuf>,
        /// Read the logs of this state dir instead of the one the config names.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Only the last N lines.
        #[arg(short = 'n', long, value_name = "N")]
        tail: Option<usize>,
        /// Keep printing new output as it is written.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// The job queue (STATE_DIR/queue.db). Works with or without a running agent.
    Queue {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// The fleet sharing this config's queue: each node's heartbeat age, whether it is
    /// alive, its GPUs, services up, jobs running, and which one leads.
    Nodes {
        #[command(flatten)]
        target: Target,
        /// Print the fleet as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Name the log line that matters: known causes first (OOM, CUDA, Xid, NCCL, timeouts…),
    /// then symptoms, noise labelled as noise, and unrecognised errors collapsed.
    /// Reads plain text, journalctl -o short-iso, dmesg -T and docker JSON lines.
    Explain {
        /// Files to read, `-` (or none) for standard input, or services by name: a service's
        /// output since its current run began, with the kernel's lines recorded for it.
        files: Vec<PathBuf>,
        /// For a service: read its last N runs, not only the current one.
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        runs: u32,
        #[command(flatten)]
        target: Target,
        /// Print every finding and the unrecognised errors as JSON.
        #[arg(long)]
        json: bool,
        /// How many findings to print (at least 1).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
        top: u32,
        /// Only lines from this recent (`"2h"`, `"30m"`) or since this time
        /// (`"2026-03-02T10:00:00Z"`). Lines without a time of their own (stack frames)
        /// go with the last timed line before them.
        #[arg(long, value_name = "T")]
        since: Option<String>,
    },
    /// Read docker compose files and write the equivalent steward.toml: each key with a
    /// comment saying where it came from, and a report (on stderr) of every decision,
    /// what steward does better and what it cannot take over.
    Import {
        /// Compose files, read in order (later ones override earlier ones, as `docker
        /// compose -f a -f b` does). Default: compose.yaml (or docker-compose.yml) here, with
        /// its override file.
        files: Vec<PathBuf>,
        /// Write the steward.toml here instead of to standard output (refused if the file
        /// exists, unless --force).
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Overwrite the --output file if it exists.
        #[arg(long)]
        force: bool,
        /// Print the report as JSON on standard output (the TOML then needs --output).
        #[arg(long)]
        json: bool,
        /// Fail when anything cannot be taken over (ports, volumes, networks, …).
        #[arg(long)]
        strict: bool,
        /// Keep services written once per GPU and worker as they are, instead of making one
        /// service with gpus and replicas_per_gpu.
        #[arg(long)]
        no_collapse: bool,
    },
    /// Check a config file.
    Config {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config as `up` would (the file, every program and working directory,
    /// and whether the plan fits this host), then print it resolved.
    Check {
        /// The config file (or `-f FILE`; default: ./steward.toml).
        #[arg(value_name = "FILE")]
        path: Option<PathBuf>,
        /// Print the resolved config as JSON.
        #[arg(long)]
        json: bool,
        /// Check only the file, not this host (programs on PATH, working directories, the
        /// plan's fit): for a config written for another machine.
        #[arg(long)]
        no_host: bool,
        /// Read host facts under DIR (proc/…, sys/…) instead of the live host.
        #[arg(long, value_name = "DIR")]
        sysroot: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Enqueue files: directories are walked; each file is one job, keyed by its content's
    /// blake3 (so a file enqueued twice, or already done, is not queued again).
    Add {
        /// The queue; a pipeline of the config must take jobs from it (or give --force).
        queue: String,
        /// Files and folders (walked) to enqueue.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Only files whose name matches, e.g. '*.pdf'.
        #[arg(long)]
        glob: Option<String>,
        /// What makes two inputs the same job: their content and name, or their path.
        #[arg(long, value_enum, default_value_t = KeyKind::Content)]
        key: KeyKind,
        /// Attempts before a job is quarantined (default: the pipeline's max_attempts).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        max_attempts: Option<u32>,
        /// Higher runs first.
        #[arg(long, default_value_t = 0)]
        priority: i64,
        /// Enqueue even into a queue no pipeline of the config takes jobs from.
        #[arg(long)]
        force: bool,
    },
    /// Counts by state, the rate over the last minute, the ETA and the oldest running job.
    Stats {
        /// One queue (default: all).
        queue: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List jobs.
    Ls {
        /// Only this queue's jobs.
        #[arg(long)]
        queue: Option<String>,
        /// Only jobs in this state.
        #[arg(long, value_parser = STATES)]
        state: Option<String>,
        /// Only jobs whose key or input contains this text.
        #[arg(long, value_name = "TEXT")]
        search: Option<String>,
        /// At most this many, oldest first.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One job with every attempt: owner, classification, error, stderr tail.
    Show {
        /// The job's id (`queue ls` lists them).
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put jobs back to pending with their attempts reset: one by id, or all in a state.
    Retry {
        /// One job, by id.
        id: Option<i64>,
        /// Every job in this state (not `running`).
        #[arg(long, value_parser = STATES)]
        state: Option<String>,
        /// With --state: only this queue's jobs.
        #[arg(long)]
        queue: Option<String>,
    },
    /// Cancel jobs that have not finished.
    Cancel {
        /// The jobs' ids.
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// Delete finished jobs older than a duration.
    Purge {
        /// Which finished jobs.
        #[arg(long, value_parser = ["succeeded", "quarantined", "cancelled"])]
        state: String,
        /// Only those finished longer ago than this, e.g. "7d".
        #[arg(long, value_name = "DURATION")]
        older_than: String,
    },
    /// Reconcile the queue with its outputs: jobs whose output exists become succeeded;
    /// succeeded jobs whose output is missing are reported (and requeued on request).
    RebuildDone {
        /// The queue to reconcile.
        queue: String,
        /// The folder the outputs are in.
        #[arg(long, value_name = "DIR")]
        outputs: PathBuf,
        /// The output's name, from {stem}, {name}, {input}, e.g. '{stem}.json'.
        #[arg(long)]
        pattern: String,
        /// Put succeeded jobs whose output is missing back to pending.
        #[arg(long)]
        requeue_missing: bool,
    },
    /// Every job, as JSON lines or CSV.
    Export {
        /// CSV with a header line.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// JSON, one job per line (the default).
        #[arg(long)]
        json: bool,
        /// Only this queue's jobs.
        #[arg(long)]
        queue: Option<String>,
    },
    /// Take a backup now, into STATE_DIR/backups/.
    Backup,
    /// Put a backup in place of queue.db (default: the newest good one); the current file is kept aside.
    Restore {
        /// The backup file (default: the newest healthy one in STATE_DIR/backups).
        backup: Option<PathBuf>,
    },
}

/// The job states a `--state` takes.
const STATES: [&str; 6] = [
    "pending",
    "running",
    "succeeded",
    "retrying",
    "quarantined",
    "cancelled",
];

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KeyKind {
    /// The blake3 of the file's content, with its name: the same file under the same name
    /// is one job wherever it is, and two files with the same bytes but different names
    /// are two jobs (each gets its output).
    Content,
    /// The file's absolute path.
    Path,
}

impl Cli {
    /// The command, with the config and state dir given before it filled into its own.
    pub fn command(self) -> Command {
        let (file, state_dir) = (self.file, self.state_dir);
        let mut command = self.command;
        match &mut command {
            Command::Up { target, .. }
            | Command::Run { target, .. }
            | Command::Gateway { target }
            | Command::Down { target }
            | Command::Reload { target }
            | Command::Ps { target, .. }
            | Command::Start { target, .. }
            | Command::Stop { target, .. }
            | Command::Restart { target, .. }
            | Command::Queue { target, .. }
            | Command::Nodes { target, .. }
            | Command::Config { target, .. }
            | Command::Explain { target, .. } => target.or(&file, &state_dir),
            Command::Logs {
                file: f,
                state_dir: s,
                ..
            } => {
                if f.is_none() {
                    f.clone_from(&file);
                }
                if s.is_none() {
                    s.clone_from(&state_dir);
                }
            }
            Command::Host { node } | Command::Plan { node } | Command::Doctor { node, .. } => {
                if node.file.is_none() {
                    node.file.clone_from(&file);
                }
            }
            // It reads compose files, named on its own command line.
            Command::Import { .. } => {}
        }
        command
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every argument of every command says what it is for in `--help`.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() && path.contains(' ') {
                missing.push(format!("{path} (the command itself)"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg
                    .get_help()
                    .is_none_or(|h| h.to_string().trim().is_empty())
                {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&<super::Cli as CommandFactory>::command(), "", &mut missing);
        assert!(missing.is_empty(), "no help for: {missing:?}");
    }

    #[test]
    fn the_values_of_state_are_listed() {
        let help = <super::Cli as CommandFactory>::command()
            .find_subcommand_mut("queue")
            .and_then(|q| q.find_subcommand_mut("ls"))
            .map(|ls| ls.render_long_help().to_string())
            .unwrap_or_default();
        for state in ["pending", "running", "retrying", "succeeded", "quarantined"] {
            assert!(help.contains(state), "{state} missing from:\n{help}");
        }
    }
}
