//! GPU memory per service: the GPUs' per-process lists (NVML, or `nvidia-smi -q -x`; under
//! `--sysroot`, its captured `nvidia-smi-q.xml`, which is how tests inject one), read at
//! most every few seconds, summed onto the instances whose processes hold it.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use steward_api::{attribute_gpu_memory, GpuProcessMemory, ServiceStatus};
use steward_host::{GpuInventory, Sysroot};

/// How long one read is reused: NVML or nvidia-smi cost milliseconds, and `ps`, a page and
/// a scraper may all ask within a second.
const READ_FOR: Duration = Duration::from_secs(2);

pub struct GpuReader {
    root: Sysroot,
    read: Mutex<Option<(Instant, Vec<GpuProcessMemory>)>>,
}

impl GpuReader {
    pub fn new(sysroot: Option<&Path>) -> Self {
        GpuReader {
            root: sysroot.map_or_else(Sysroot::live, Sysroot::at),
            read: Mutex::new(None),
        }
    }

    /// Every process holding GPU memory, by host pid.
    pub fn processes(&self) -> Vec<GpuProcessMemory> {
        let mut read = self.read.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, procs)) = &*read {
            if at.elapsed() < READ_FOR {
                return procs.clone();
            }
        }
        let procs: Vec<GpuProcessMemory> = GpuInventory::discover(&self.root)
            .gpus
            .iter()
            .flat_map(|g| {
                g.processes.iter().filter_map(|p| {
                    Some(GpuProcessMemory {
                        pid: p.pid,
                        gpu: g.index,
                        uuid: g.uuid.clone(),
                        bytes: p.used_memory?,
                    })
                })
            })
            .collect();
        *read = Some((Instant::now(), procs.clone()));
        procs
    }

    /// `statuses` with each instance's GPU memory (summed over its GPUs) filled in.
    pub fn fill(&self, mut statuses: Vec<ServiceStatus>) -> Vec<ServiceStatus> {
        let held = attribute_gpu_memory(&statuses, &self.processes());
        for s in &mut statuses {
            let mine: Vec<u64> = held
                .iter()
                .filter(|g| g.instance == s.name)
                .map(|g| g.bytes)
                .collect();
            s.gpu_memory_used = (!mine.is_empty()).then(|| mine.iter().sum());
        }
        statuses
    }
}
