//! The keys of a worker process, the same for a service and for a pipeline's replicas:
//! where it runs and with what (env, cwd), how many and where (replicas, GPUs, CPUs), its
//! limits (memory, pids, OOM score, core dumps), how it stops, and its log. They are
//! declared once, in [`with_worker_keys!`], and both sections take them from there.

use crate::ByteSize;
use serde::{Deserialize, Serialize};

/// Declares a raw (as written) config struct: its own keys, then every worker key; and
/// `take_worker` / `with_worker` to move the worker keys out of it and into another.
macro_rules! with_worker_keys {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            #[serde(default)]
            pub env: std::collections::BTreeMap<String, String>,
            pub cwd: Option<std::path::PathBuf>,
            pub replicas: Option<u32>,
            pub gpus: Option<$crate::GpuSelector>,
            pub replicas_per_gpu: Option<u32>,
            pub gpu_settle: Option<$crate::HumanDuration>,
            pub cuda_env: Option<$crate::CudaEnv>,
            pub start_stagger: Option<$crate::HumanDuration>,
            pub cpus_per_replica: Option<u32>,
            pub cpus: Option<$crate::CpuList>,
            pub memory: Option<$crate::ByteSize>,
            pub memory_swap: Option<$crate::ByteSize>,
            pub gpu_memory: Option<$crate::ByteSize>,
            pub pids_max: Option<u32>,
            pub oom_score_adj: Option<i32>,
            pub core_dumps: Option<bool>,
            pub stop_signal: Option<$crate::StopSignal>,
            pub stop_timeout: Option<$crate::HumanDuration>,
            #[serde(default)]
            pub log: $crate::worker::RawLog,
        }

        // Not every struct uses both directions.
        #[allow(dead_code)]
        impl $name {
            /// Moves the worker keys out.
            pub fn take_worker(&mut self) -> $crate::worker::RawWorker {
                $crate::worker::RawWorker {
                    env: std::mem::take(&mut self.env),
                    cwd: self.cwd.take(),
                    replicas: self.replicas.take(),
                    gpus: self.gpus.take(),
                    replicas_per_gpu: self.replicas_per_gpu.take(),
                    gpu_settle: self.gpu_settle.take(),
                    cuda_env: self.cuda_env.take(),
                    start_stagger: self.start_stagger.take(),
                    cpus_per_replica: self.cpus_per_replica.take(),
                    cpus: self.cpus.take(),
                    memory: self.memory.take(),
                    memory_swap: self.memory_swap.take(),
                    gpu_memory: self.gpu_memory.take(),
                    pids_max: self.pids_max.take(),
                    oom_score_adj: self.oom_score_adj.take(),
                    core_dumps: self.core_dumps.take(),
                    stop_signal: self.stop_signal.take(),
                    stop_timeout: self.stop_timeout.take(),
                    log: std::mem::take(&mut self.log),
                }
            }

            /// These keys, with the worker keys of `w`.
            pub fn with_worker(mut self, w: $crate::worker::RawWorker) -> Self {
                let $crate::worker::RawWorker {
                    env, cwd, replicas, gpus, replicas_per_gpu, gpu_settle, cuda_env,
                    start_stagger, cpus_per_replica, cpus, memory, memory_swap, gpu_memory,
                    pids_max, oom_score_adj, core_dumps, stop_signal, stop_timeout, log,
                } = w;
                self.env = env;
                self.cwd = cwd;
                self.replicas = replicas;
                self.gpus = gpus;
                self.replicas_per_gpu = replicas_per_gpu;
                self.gpu_settle = gpu_settle;
                self.cuda_env = cuda_env;
                self.start_stagger = start_stagger;
                self.cpus_per_replica = cpus_per_replica;
                self.cpus = cpus;
                self.memory = memory;
                self.memory_swap = memory_swap;
                self.gpu_memory = gpu_memory;
                self.pids_max = pids_max;
                self.oom_score_adj = oom_score_adj;
                self.core_dumps = core_dumps;
                self.stop_signal = stop_signal;
                self.stop_timeout = stop_timeout;
                self.log = log;
                self
            }
        }
    };
}
pub(crate) use with_worker_keys;

with_worker_keys! {
    /// Only the worker keys: what moves from a pipeline's section to its replicas.
    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct RawWorker {}
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub max_size: Option<ByteSize>,
    pub keep: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LogRotation {
    pub max_size: ByteSize,
    pub keep: u32,
}

impl Default for LogRotation {
    fn default() -> Self {
        LogRotation {
            max_size: ByteSize(10 * 1024 * 1024),
            keep: 5,
        }
    }
}
