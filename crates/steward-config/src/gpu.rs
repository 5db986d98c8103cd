//! Which GPUs a service's replicas run on, and the CUDA environment they get.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `gpus = [0, 1]`, `gpus = "all"`, or `gpus = ["GPU-3f2a…"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "a list of GPU indexes such as [0, 1], a list of GPU UUIDs, or \"all\""
)]
pub enum GpuSelector {
    Indexes(Vec<u32>),
    Uuids(Vec<String>),
    All(AllGpus),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllGpus {
    All,
}

/// The CUDA environment profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CudaEnv {
    /// `CUDA_DEVICE_ORDER=PCI_BUS_ID`, `CUDA_MODULE_LOADING=LAZY`,
    /// `PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`.
    #[default]
    Default,
    /// `default`, plus `CUDA_DEVICE_MAX_CONNECTIONS=1`.
    Strict,
    /// Nothing added (CUDA_VISIBLE_DEVICES is still set).
    None,
}

impl CudaEnv {
    pub fn vars(self) -> Vec<(&'static str, &'static str)> {
        let base = [
            ("CUDA_DEVICE_ORDER", "PCI_BUS_ID"),
            ("CUDA_MODULE_LOADING", "LAZY"),
            ("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True"),
        ];
        match self {
            CudaEnv::None => vec![],
            CudaEnv::Default => base.to_vec(),
            CudaEnv::Strict => {
                let mut v = base.to_vec();
                v.push(("CUDA_DEVICE_MAX_CONNECTIONS", "1"));
                v
            }
        }
    }

    /// The profile under the user's own `env`: values the user set win.
    pub fn apply(self, env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = self
            .vars()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.extend(env.clone());
        out
    }
}
