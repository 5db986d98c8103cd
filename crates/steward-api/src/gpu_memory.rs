//! GPU memory per service: NVML lists the processes holding memory on each GPU by host
//! pid; the agent knows which pids are which service's. The labels `gpu` and `UUID` are
//! DCGM's, so the series joins `DCGM_FI_*` on a dashboard.

use crate::ServiceStatus;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One process's memory on one GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuProcessMemory {
    pub pid: u32,
    pub gpu: u32,
    pub uuid: String,
    pub bytes: u64,
}

/// A service instance's memory on one GPU, summed over its processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceGpuMemory {
    pub instance: String,
    pub service: String,
    pub replica: u32,
    pub gpu: u32,
    pub uuid: String,
    pub bytes: u64,
}

pub fn attribute_gpu_memory(
    statuses: &[ServiceStatus],
    processes: &[GpuProcessMemory],
) -> Vec<ServiceGpuMemory> {
    let owner: BTreeMap<u32, &ServiceStatus> = statuses
        .iter()
        .flat_map(|s| s.processes.iter().map(move |&p| (p, s)))
        .collect();
    let mut sums: BTreeMap<(String, u32, String), (u64, &ServiceStatus)> = BTreeMap::new();
    for p in processes {
        if let Some(s) = owner.get(&p.pid) {
            sums.entry((s.name.clone(), p.gpu, p.uuid.clone()))
                .or_insert((0, s))
                .0 += p.bytes;
        }
    }
    sums.into_iter()
        .map(|((instance, gpu, uuid), (bytes, s))| ServiceGpuMemory {
            instance,
            service: s.service.clone(),
            replica: s.replica,
            gpu,
            uuid,
            bytes,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str, processes: Vec<u32>) -> ServiceStatus {
        serde_json::from_value(serde_json::json!({
            "name": name, "service": name.split('#').next().unwrap(), "replica": 1,
            "gpu": 0, "state": "running", "pid": processes.first(), "started_at": null,
            "uptime_ms": null, "restarts": 0, "last_exit": null, "recent_exits": [],
            "next_start_in_ms": null, "memory_used": null, "memory_limit": null,
            "enforcement": "cgroup-v1", "health": null, "last_health_error": null,
            "ready": true, "waiting_on": null, "processes": processes,
        }))
        .unwrap()
    }

    #[test]
    fn a_services_processes_are_summed_per_gpu_and_strangers_left_out() {
        // The pids and sizes nvidia-smi showed for two PyTorch workers on an H200.
        let uuid = "GPU-47af2219-09e0-d052-c96e-97203cad93dc";
        let procs = [
            GpuProcessMemory {
                pid: 870,
                gpu: 0,
                uuid: uuid.into(),
                bytes: 3_862_953_984,
            },
            GpuProcessMemory {
                pid: 871,
                gpu: 0,
                uuid: uuid.into(),
                bytes: 6_010_437_632,
            },
            GpuProcessMemory {
                pid: 999,
                gpu: 0,
                uuid: uuid.into(),
                bytes: 1,
            },
        ];
        let statuses = [status("worker#1", vec![870, 871]), status("api", vec![5])];
        let got = attribute_gpu_memory(&statuses, &procs);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].instance, "worker#1");
        assert_eq!(got[0].bytes, 3_862_953_984 + 6_010_437_632);
        assert_eq!(got[0].uuid, uuid);
    }
}
