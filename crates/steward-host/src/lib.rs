//! Host facts. Every read goes through a [`Sysroot`], so tests and `--sysroot` can point
//! steward at a captured tree (`proc/…`, `sys/…`) instead of the live machine.

mod gpus;
mod meminfo;
mod sysroot;

pub use gpus::{Gpu, GpuInventory, FAKE_GPUS_VAR};
pub use meminfo::MemInfo;
pub use sysroot::{HostError, Sysroot};
