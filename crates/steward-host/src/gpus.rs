//! The node's GPUs: through NVML loaded at run time, else by parsing `nvidia-smi -q -x`,
//! and each GPU's NUMA node and local CPUs from sysfs. A host without a GPU or a driver is
//! normal: discovery says why there are none, and only a config that asks for GPUs is
//! refused.

use crate::{cpulist, Sysroot};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gpu {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    /// As NVML writes it: `00000000:00:06.0`.
    pub pci_bus_id: String,
    pub memory_total: u64,
    pub memory_used: u64,
    pub memory_free: u64,
    /// Processes holding memory on it, by host pid.
    pub processes: Vec<GpuProcess>,
    /// Uncorrected ECC errors since the driver loaded.
    pub ecc_uncorrected_volatile: Option<u64>,
    /// Uncorrected ECC errors over the GPU's life.
    pub ecc_uncorrected_aggregate: Option<u64>,
    /// Pages waiting to be retired (older GPUs); needs a GPU reset.
    pub retired_pages_pending: Option<bool>,
    /// Rows waiting to be remapped (A100 and later); needs a GPU reset.
    pub remapped_rows_pending: Option<bool>,
    pub persistence_mode: Option<bool>,
    /// From sysfs; `None` where the platform does not say (a VM often reports -1).
    pub numa_node: Option<u32>,
    pub local_cpus: Option<Vec<usize>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuProcess {
    pub pid: u32,
    pub used_memory: Option<u64>,
}

/// What discovery found.
#[derive(Debug, Clone, Serialize)]
pub struct GpuInventory {
    pub gpus: Vec<Gpu>,
    /// Where the list came from: `nvml`, `nvidia-smi -q -x`, a fixture file, or fake.
    pub source: String,
    pub driver_version: Option<String>,
    /// Why there are no GPUs, when there are none.
    pub absent_because: Option<String>,
}

/// For tests and demos on machines without GPUs: `STEWARD_FAKE_GPUS=N` gives N fake GPUs,
/// so that placement and start ordering run for real on them.
pub const FAKE_GPUS_VAR: &str = "STEWARD_FAKE_GPUS";

/// The most fake GPUs `STEWARD_FAKE_GPUS` gives.
pub const MAX_FAKE_GPUS: u32 = 64;

/// `STEWARD_FAKE_GPUS` as set in the environment: `None` when unset; an error that says
/// what it takes when it is not a number from 0 to [`MAX_FAKE_GPUS`].
pub fn fake_gpus() -> Result<Option<u32>, String> {
    let Some(v) = std::env::var_os(FAKE_GPUS_VAR) else {
        return Ok(None);
    };
    let text = v.to_string_lossy();
    match text.trim().parse::<u32>() {
        Ok(n) if n <= MAX_FAKE_GPUS => Ok(Some(n)),
        _ => Err(format!(
            "{FAKE_GPUS_VAR}={text:?} is not a number of fake GPUs from 0 to {MAX_FAKE_GPUS}; unset it to use the real ones"
        )),
    }
}

/// In a fixture root, a captured `nvidia-smi -q -x` stands in for the driver.
pub const SMI_CAPTURE: &str = "nvidia-smi-q.xml";

impl GpuInventory {
    /// The live host: fake GPUs if asked, else NVML, else `nvidia-smi -q -x`.
    /// Under a fixture root: its `nvidia-smi-q.xml`, if any.
    pub fn discover(root: &Sysroot) -> GpuInventory {
        match fake_gpus() {
            Ok(Some(n)) => return GpuInventory::fake(n),
            Ok(None) => {}
            // Never silently the real GPUs when fake ones were asked for.
            Err(why) => return GpuInventory::none("fake", why),
        }
        let mut inv = if !root.is_live() {
            match std::fs::read_to_string(root.root().join(SMI_CAPTURE)) {
                Ok(xml) => from_smi_xml(&xml, &format!("{SMI_CAPTURE} in the fixture root")),
                Err(_) => GpuInventory::none(
                    "fixture root",
                    format!("no {SMI_CAPTURE} in {}", root.root().display()),
                ),
            }
        } else {
            match nvml() {
                Ok(inv) => inv,
                Err(nvml_why) => match nvidia_smi() {
                    Some(inv) => inv,
                    None => GpuInventory::none("nvml", nvml_why),
                },
            }
        };
        for gpu in &mut inv.gpus {
            add_sysfs(root, gpu);
        }
        inv
    }

    fn none(source: &str, why: String) -> GpuInventory {
        GpuInventory {
            gpus: Vec::new(),
            source: source.into(),
            driver_version: None,
            absent_because: Some(why),
        }
    }

    pub fn fake(n: u32) -> GpuInventory {
        GpuInventory {
            gpus: (0..n)
                .map(|i| Gpu {
                    index: i,
                    uuid: format!("GPU-fake0000-0000-0000-0000-{i:012}"),
                    name: "fake GPU".into(),
                    pci_bus_id: format!("00000000:{:02x}:00.0", i + 1),
                    memory_total: 80 << 30,
                    memory_used: 0,
                    memory_free: 80 << 30,
                    processes: Vec::new(),
                    ecc_uncorrected_volatile: Some(0),
                    ecc_uncorrected_aggregate: Some(0),
                    retired_pages_pending: None,
                    remapped_rows_pending: Some(false),
                    persistence_mode: Some(true),
                    numa_node: None,
                    local_cpus: None,
                })
                .collect(),
            source: format!("fake ({FAKE_GPUS_VAR}={n})"),
            driver_version: None,
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

/// sysfs names a PCI device `0000:00:06.0`; NVML writes `00000000:00:06.0`.
fn sysfs_pci_name(bus_id: &str) -> String {
    let lower = bus_id.to_ascii_lowercase();
    match lower.split_once(':') {
        Some((domain, rest)) if domain.len() > 4 => {
            format!("{}:{rest}", &domain[domain.len() - 4..])
        }
        _ => lower,
    }
}

fn add_sysfs(root: &Sysroot, gpu: &mut Gpu) {
    let dir = format!("/sys/bus/pci/devices/{}", sysfs_pci_name(&gpu.pci_bus_id));
    gpu.numa_node = root
        .read(&format!("{dir}/numa_node"))
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|n| u32::try_from(n).ok());
    gpu.local_cpus = root
        .read(&format!("{dir}/local_cpulist"))
        .ok()
        .and_then(|s| cpulist::parse(s.trim()).ok());
}

fn nvml() -> Result<GpuInventory, String> {
    use nvml_wrapper::enum_wrappers::device::{EccCounter, MemoryError};
    use nvml_wrapper::enums::device::UsedGpuMemory;
    let nvml = nvml_wrapper::Nvml::init()
        .map_err(|e| format!("NVML could not be loaded ({e}); is the NVIDIA driver installed?"))?;
    let count = nvml.device_count().map_err(|e| format!("NVML: {e}"))?;
    let gpus = (0..count)
        .map(|i| {
            let d = nvml
                .device_by_index(i)
                .map_err(|e| format!("NVML device {i}: {e}"))?;
            let mem = d.memory_info().ok();
            Ok(Gpu {
                index: i,
                uuid: d.uuid().map_err(|e| format!("NVML device {i} uuid: {e}"))?,
                name: d.name().unwrap_or_else(|_| "unknown".into()),
                pci_bus_id: d.pci_info().map(|p| p.bus_id).unwrap_or_default(),
                memory_total: mem.as_ref().map_or(0, |m| m.total),
                memory_used: mem.as_ref().map_or(0, |m| m.used),
                memory_free: mem.as_ref().map_or(0, |m| m.free),
                processes: d
                    .running_compute_processes()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| GpuProcess {
                        pid: p.pid,
                        used_memory: match p.used_gpu_memory {
                            UsedGpuMemory::Used(b) => Some(b),
                            UsedGpuMemory::Unavailable => None,
                        },
                    })
                    .collect(),
                ecc_uncorrected_volatile: d
                    .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
                    .ok(),
                ecc_uncorrected_aggregate: d
                    .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Aggregate)
                    .ok(),
                retired_pages_pending: d.are_pages_pending_retired().ok(),
                // nvml-wrapper does not wrap nvmlDeviceGetRemappedRows; nvidia-smi's XML has it.
                remapped_rows_pending: None,
                persistence_mode: d.is_in_persistent_mode().ok(),
                numa_node: None,
                local_cpus: None,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(GpuInventory {
        absent_because: gpus.is_empty().then(|| "NVML reports no GPUs".to_string()),
        gpus,
        source: "nvml".into(),
        driver_version: nvml.sys_driver_version().ok(),
    })
}

fn nvidia_smi() -> Option<GpuInventory> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["-q", "-x"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(from_smi_xml(
        &String::from_utf8_lossy(&out.stdout),
        "nvidia-smi -q -x",
    ))
}

/// Parses `nvidia-smi -q -x`. Missing or `N/A` fields become `None`, never an error.
pub fn from_smi_xml(xml: &str, source: &str) -> GpuInventory {
    // nvidia-smi's XML names a DTD; it is only a reference, never fetched.
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = match roxmltree::Document::parse_with_options(xml, options) {
        Ok(d) => d,
        Err(e) => return GpuInventory::none(source, format!("cannot parse {source}: {e}")),
    };
    let root = doc.root_element();
    let text = |node: roxmltree::Node, path: &[&str]| -> Option<String> {
        let mut n = node;
        for part in path {
            n = n.children().find(|c| c.has_tag_name(*part))?;
        }
        let t = n.text()?.trim().to_string();
        (!t.is_empty() && t != "N/A").then_some(t)
    };
    let mib = |s: Option<String>| -> Option<u64> {
        let s = s?;
        let n: u64 = s.split_whitespace().next()?.parse().ok()?;
        Some(if s.ends_with("MiB") { n << 20 } else { n })
    };
    let num = |s: Option<String>| s.and_then(|v| v.parse::<u64>().ok());
    let yes = |s: Option<String>| s.map(|v| matches!(v.as_str(), "Yes" | "Enabled"));
    let gpus: Vec<Gpu> = root
        .children()
        .filter(|n| n.has_tag_name("gpu"))
        .enumerate()
        .map(|(i, g)| {
            let ecc = |counter: &str| -> Option<u64> {
                let dram = num(text(g, &["ecc_errors", counter, "dram_uncorrectable"]));
                let sram = num(text(
                    g,
                    &["ecc_errors", counter, "sram_uncorrectable_secded"],
                ));
                match (dram, sram) {
                    (None, None) => None,
                    (d, s) => Some(d.unwrap_or(0) + s.unwrap_or(0)),
                }
            };
            Gpu {
                index: num(text(g, &["minor_number"])).map_or(i as u32, |n| n as u32),
                uuid: text(g, &["uuid"]).unwrap_or_default(),
                name: text(g, &["product_name"]).unwrap_or_else(|| "unknown".into()),
                pci_bus_id: g
                    .attribute("id")
                    .map(str::to_string)
                    .or_else(|| text(g, &["pci", "pci_bus_id"]))
                    .unwrap_or_default(),
                memory_total: mib(text(g, &["fb_memory_usage", "total"])).unwrap_or(0),
                memory_used: mib(text(g, &["fb_memory_usage", "used"])).unwrap_or(0),
                memory_free: mib(text(g, &["fb_memory_usage", "free"])).unwrap_or(0),
                processes: g
                    .children()
                    .find(|c| c.has_tag_name("processes"))
                    .map(|ps| {
                        ps.children()
                            .filter(|p| p.has_tag_name("process_info"))
                            .filter_map(|p| {
                                Some(GpuProcess {
                                    pid: num(text(p, &["pid"]))? as u32,
                                    used_memory: mib(text(p, &["used_memory"])),
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                ecc_uncorrected_volatile: ecc("volatile"),
                ecc_uncorrected_aggregate: ecc("aggregate"),
                retired_pages_pending: yes(text(g, &["retired_pages", "pending_retirement"])),
                remapped_rows_pending: yes(text(g, &["remapped_rows", "remapped_row_pending"])),
                persistence_mode: yes(text(g, &["persistence_mode"])),
                numa_node: None,
                local_cpus: None,
            }
        })
        .collect();
    GpuInventory {
        absent_because: gpus.is_empty().then(|| format!("{source} lists no GPUs")),
        gpus,
        source: source.into(),
        driver_version: text(root, &["driver_version"]),
    }
}
