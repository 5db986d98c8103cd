//! Host facts. Every read goes through a [`Sysroot`], so tests and `--sysroot` can point
//! steward at a captured tree (`proc/…`, `sys/…`, and optionally `nvidia-smi-q.xml`)
//! instead of the live machine.

mod cpu;
pub mod cpulist;
mod dns;
mod facts;
mod gpus;
mod meminfo;
pub mod synthetic;
mod sysroot;
mod system;

pub use cpu::{Core, CpuTopology};
pub use dns::{probe_resolvers, DnsAnswer};
pub use facts::HostFacts;
pub use gpus::{
    fake_gpus, from_smi_xml, Gpu, GpuInventory, GpuProcess, FAKE_GPUS_VAR, MAX_FAKE_GPUS,
    SMI_CAPTURE,
};
pub use meminfo::MemInfo;
pub use sysroot::{HostError, Sysroot};
pub use system::{resolvers, zombies, CgroupFacts, CoreDumpFacts, DiskFacts, Zombie, DISK_FIXTURE};
