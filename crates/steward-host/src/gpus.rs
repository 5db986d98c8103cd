//! The node's GPUs, through NVML loaded at run time. A host without a GPU or a driver is
//! normal: discovery then says why there are none, and only a config that asks for GPUs
//! is refused.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gpu {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub memory_total: u64,
}

/// What discovery found.
#[derive(Debug, Clone, Serialize)]
pub struct GpuInventory {
    pub gpus: Vec<Gpu>,
    /// Where the list came from: `nvml`, or `fake (STEWARD_FAKE_GPUS=N)`.
    pub source: String,
    /// Why there are no GPUs, when there are none.
    pub absent_because: Option<String>,
}

/// For tests and demos on machines without GPUs: `STEWARD_FAKE_GPUS=N` gives N fake GPUs,
/// so that placement and start ordering run for real on them.
pub const FAKE_GPUS_VAR: &str = "STEWARD_FAKE_GPUS";

impl GpuInventory {
    pub fn discover() -> GpuInventory {
        if let Ok(n) = std::env::var(FAKE_GPUS_VAR) {
            if let Ok(n) = n.trim().parse::<u32>() {
                return GpuInventory::fake(n);
            }
        }
        match nvml() {
            Ok(gpus) => GpuInventory {
                absent_because: gpus.is_empty().then(|| "NVML reports no GPUs".to_string()),
                gpus,
                source: "nvml".into(),
            },
            Err(why) => GpuInventory {
                gpus: Vec::new(),
                source: "nvml".into(),
                absent_because: Some(why),
            },
        }
    }

    pub fn fake(n: u32) -> GpuInventory {
        GpuInventory {
            gpus: (0..n)
                .map(|i| Gpu {
                    index: i,
                    uuid: format!("GPU-fake0000-0000-0000-0000-{i:012}"),
                    name: "fake GPU".into(),
                    memory_total: 80 << 30,
                })
                .collect(),
            source: format!("fake ({FAKE_GPUS_VAR}={n})"),
            absent_because: (n == 0).then(|| format!("{FAKE_GPUS_VAR}=0")),
        }
    }

    /// `"0 (GPU-…, NVIDIA H200), 1 (…)"`, or why there are none.
    pub fn describe(&self) -> String {
        if self.gpus.is_empty() {
            return format!(
                "no GPUs: {}",
                self.absent_because.as_deref().unwrap_or("none found")
            );
        }
        self.gpus
            .iter()
            .map(|g| format!("{} ({}, {})", g.index, g.uuid, g.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn nvml() -> Result<Vec<Gpu>, String> {
    let nvml = nvml_wrapper::Nvml::init()
        .map_err(|e| format!("NVML could not be loaded ({e}); is the NVIDIA driver installed?"))?;
    let count = nvml.device_count().map_err(|e| format!("NVML: {e}"))?;
    (0..count)
        .map(|i| {
            let d = nvml
                .device_by_index(i)
                .map_err(|e| format!("NVML device {i}: {e}"))?;
            Ok(Gpu {
                index: i,
                uuid: d.uuid().map_err(|e| format!("NVML device {i} uuid: {e}"))?,
                name: d.name().unwrap_or_else(|_| "unknown".into()),
                memory_total: d.memory_info().map(|m| m.total).unwrap_or(0),
            })
        })
        .collect()
}
