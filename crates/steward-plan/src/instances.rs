//! Replicas and GPUs: every service becomes one or more instances (`svc`, or `svc#0` to
//! `svc#N-1`), each with its GPU and its environment.

use serde::Serialize;
use std::collections::BTreeMap;
use steward_config::{Config, GpuSelector, Service};
use steward_host::{Gpu, GpuInventory};

/// One process slot the supervisor runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    pub service: String,
    /// `svc` for a single replica, `svc#i` otherwise.
    pub name: String,
    pub replica: u32,
    pub gpu: Option<Gpu>,
    /// CPUs it is pinned to: the service's explicit `cpus`, or whole cores chosen by the
    /// placement for `cpus_per_replica`.
    pub cpus: Option<Vec<usize>>,
    pub memory: Option<u64>,
    pub gpu_memory: Option<u64>,
    pub pids_max: Option<u32>,
    /// The full environment steward adds: the service's resolved env, the CUDA variables
    /// and `STEWARD_REPLICA` / `STEWARD_GPU`.
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{key}: this service asks for GPUs, but there are none ({why}); remove `gpus`, or set STEWARD_FAKE_GPUS=N to try placement without GPUs")]
    NoGpus { key: String, why: String },
    #[error("{key}: there is no GPU {wanted}; this host has: {found}")]
    UnknownGpu {
        key: String,
        wanted: String,
        found: String,
    },
}

/// Expands every service into its instances, assigning GPUs round-robin.
pub fn instances(config: &Config, inventory: &GpuInventory) -> Result<Vec<Instance>, PlanError> {
    let mut out = Vec::new();
    for svc in config.workloads() {
        out.extend(service_instances(svc, inventory)?);
    }
    Ok(out)
}

fn service_instances(svc: &Service, inventory: &GpuInventory) -> Result<Vec<Instance>, PlanError> {
    let gpus = match &svc.gpus {
        None => Vec::new(),
        Some(sel) => select(svc, sel, inventory)?,
    };
    let count = match svc.replicas_per_gpu {
        Some(k) => k * gpus.len() as u32,
        None => svc.replicas,
    };
    let single = count == 1 && svc.replicas_per_gpu.is_none();
    Ok((0..count)
        .map(|i| {
            let gpu = (!gpus.is_empty()).then(|| gpus[i as usize % gpus.len()].clone());
            let mut env = svc.resolved_env.clone();
            env.insert("STEWARD_REPLICA".into(), i.to_string());
            if let Some(g) = &gpu {
                env.insert("CUDA_VISIBLE_DEVICES".into(), g.uuid.clone());
                env.insert("STEWARD_GPU".into(), g.index.to_string());
            }
            Instance {
                service: svc.name.clone(),
                name: if single {
                    svc.name.clone()
                } else {
                    format!("{}#{i}", svc.name)
                },
                replica: i,
                gpu,
                cpus: svc.cpus.as_ref().map(|c| c.0.clone()),
                memory: svc.memory.map(|m| m.bytes()),
                gpu_memory: svc.gpu_memory.map(|m| m.bytes()),
                pids_max: svc.pids_max,
                env,
            }
        })
        .collect())
}

fn select(svc: &Service, sel: &GpuSelector, inv: &GpuInventory) -> Result<Vec<Gpu>, PlanError> {
    let key = format!("services.{}.gpus", svc.name);
    if inv.gpus.is_empty() {
        return Err(PlanError::NoGpus {
            key,
            why: inv
                .absent_because
                .clone()
                .unwrap_or_else(|| "none found".into()),
        });
    }
    let unknown = |wanted: String| PlanError::UnknownGpu {
        key: key.clone(),
        wanted,
        found: inv.describe(),
    };
    match sel {
        GpuSelector::All(_) => Ok(inv.gpus.clone()),
        GpuSelector::Indexes(idx) => idx
            .iter()
            .map(|i| {
                inv.gpus
                    .iter()
                    .find(|g| g.index == *i)
                    .cloned()
                    .ok_or_else(|| unknown(i.to_string()))
            })
            .collect(),
        GpuSelector::Uuids(uuids) => uuids
            .iter()
            .map(|u| {
                inv.gpus
                    .iter()
                    .find(|g| &g.uuid == u)
                    .cloned()
                    .ok_or_else(|| unknown(u.clone()))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        steward_config::parse(text, std::path::Path::new("/x/steward.toml")).unwrap()
    }

    #[test]
    fn replicas_spread_round_robin_with_cuda_env() {
        let c = cfg("[services.w]\ncommand = [\"x\"]\nreplicas = 4\ngpus = \"all\"\nenv = { CUDA_MODULE_LOADING = \"EAGER\" }\n");
        let inst = instances(&c, &GpuInventory::fake(2)).unwrap();
        let names: Vec<_> = inst
            .iter()
            .map(|i| (i.name.as_str(), i.gpu.as_ref().unwrap().index))
            .collect();
        assert_eq!(names, vec![("w#0", 0), ("w#1", 1), ("w#2", 0), ("w#3", 1)]);
        let env = &inst[1].env;
        assert_eq!(
            env["CUDA_VISIBLE_DEVICES"],
            inst[1].gpu.as_ref().unwrap().uuid
        );
        assert_eq!(env["STEWARD_GPU"], "1");
        assert_eq!(env["STEWARD_REPLICA"], "1");
        assert_eq!(env["CUDA_DEVICE_ORDER"], "PCI_BUS_ID");
        assert_eq!(
            env["CUDA_MODULE_LOADING"], "EAGER",
            "the user's env wins over the profile"
        );
    }

    #[test]
    fn replicas_per_gpu_and_single_instances() {
        let c = cfg("[services.w]\ncommand = [\"x\"]\ngpus = [1]\nreplicas_per_gpu = 2\n[services.web]\ncommand = [\"x\"]\n");
        let inst = instances(&c, &GpuInventory::fake(2)).unwrap();
        let names: Vec<_> = inst.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, vec!["w#0", "w#1", "web"]);
        assert!(inst[2].gpu.is_none());
        assert!(
            !inst[2].env.contains_key("CUDA_DEVICE_ORDER"),
            "no CUDA profile without gpus"
        );
    }

    #[test]
    fn missing_or_unknown_gpus_are_refused_with_the_list() {
        let c = cfg("[services.w]\ncommand = [\"x\"]\ngpus = [3]\n");
        let err = instances(&c, &GpuInventory::fake(2))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("services.w.gpus: there is no GPU 3; this host has: 0 (GPU-fake"),
            "{err}"
        );
        let err = instances(&c, &GpuInventory::fake(0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("asks for GPUs, but there are none"), "{err}");
    }
}
