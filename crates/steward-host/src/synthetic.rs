//! Synthetic host trees for tests and demos: lays out `sys/…`, `proc/…` and an
//! `nvidia-smi-q.xml` for a topology described in a few numbers, so placement can be
//! exercised on hosts this project has no capture of (two sockets, AMD CCXs, 4 GPUs).

use std::path::Path;

/// A host to lay out. Logical CPU `c + t * cores` is thread `t` of core `c`, as Linux
/// numbers them on x86 (siblings of core 0 on a 12-core part are 0 and 12).
#[derive(Debug, Clone)]
pub struct SyntheticHost {
    pub cores: usize,
    pub threads_per_core: usize,
    /// Cores per NUMA node, in order.
    pub numa_cores: Vec<usize>,
    /// Cores per L3 group, in order (a CCX on AMD, a socket on Intel).
    pub l3_cores: Vec<usize>,
    /// For each GPU, its NUMA node.
    pub gpu_numa: Vec<u32>,
    pub mem_total_kib: u64,
    pub gpu_memory_mib: u64,
}

impl SyntheticHost {
    /// Two sockets, 8 cores each with hyper-threading (32 CPUs), 4 GPUs: 0 and 1 on
    /// socket 0, 2 and 3 on socket 1.
    pub fn two_socket_4_gpus() -> Self {
        SyntheticHost {
            cores: 16,
            threads_per_core: 2,
            numa_cores: vec![8, 8],
            l3_cores: vec![8, 8],
            gpu_numa: vec![0, 0, 1, 1],
            mem_total_kib: 512 * 1024 * 1024,
            gpu_memory_mib: 81559,
        }
    }

    /// A workstation-class node as operators pin by hand: 12 cores, 24 threads, one NUMA node; CCX0 = cores 0-5 (siblings
    /// 12-17) for GPU 0, CCX1 = cores 6-11 (siblings 18-23) for GPU 1.
    pub fn amd_two_ccx() -> Self {
        SyntheticHost {
            cores: 12,
            threads_per_core: 2,
            numa_cores: vec![12],
            l3_cores: vec![6, 6],
            gpu_numa: vec![0, 0],
            mem_total_kib: 128 * 1024 * 1024,
            gpu_memory_mib: 24564,
        }
    }

    /// 12 cores, 24 threads in four CCXs of three cores, one NUMA node, 2 GPUs.
    pub fn amd_4_ccx() -> Self {
        SyntheticHost {
            l3_cores: vec![3, 3, 3, 3],
            ..Self::amd_two_ccx()
        }
    }

    pub fn cpus(&self) -> usize {
        self.cores * self.threads_per_core
    }

    fn group_of(sizes: &[usize], core: usize) -> usize {
        let mut end = 0;
        for (i, n) in sizes.iter().enumerate() {
            end += n;
            if core < end {
                return i;
            }
        }
        sizes.len() - 1
    }

    fn cpus_of(&self, sizes: &[usize], group: usize) -> Vec<usize> {
        let start: usize = sizes[..group].iter().sum();
        let mut cpus: Vec<usize> = (start..start + sizes[group])
            .flat_map(|c| (0..self.threads_per_core).map(move |t| c + t * self.cores))
            .collect();
        cpus.sort_unstable();
        cpus
    }

    /// Writes the tree under `root`.
    pub fn write(&self, root: &Path) -> std::io::Result<()> {
        let w = |rel: &str, text: &str| -> std::io::Result<()> {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap_or(root))?;
            std::fs::write(p, format!("{text}\n"))
        };
        let all = crate::cpulist::format(&(0..self.cpus()).collect::<Vec<_>>());
        w("sys/devices/system/cpu/online", &all)?;
        w(
            "proc/self/status",
            &format!("Name:\tsteward\nCpus_allowed_list:\t{all}"),
        )?;
        w(
            "proc/meminfo",
            &format!(
                "MemTotal: {} kB\nMemAvailable: {} kB\nSwapTotal: 0 kB\nSwapFree: 0 kB",
                self.mem_total_kib, self.mem_total_kib
            ),
        )?;
        for cpu in 0..self.cpus() {
            let core = cpu % self.cores;
            let siblings: Vec<usize> = (0..self.threads_per_core)
                .map(|t| core + t * self.cores)
                .collect();
            let base = format!("sys/devices/system/cpu/cpu{cpu}");
            w(
                &format!("{base}/topology/thread_siblings_list"),
                &crate::cpulist::format(&siblings),
            )?;
            w(&format!("{base}/cache/index3/level"), "3")?;
            let l3 = self.cpus_of(&self.l3_cores, Self::group_of(&self.l3_cores, core));
            w(
                &format!("{base}/cache/index3/shared_cpu_list"),
                &crate::cpulist::format(&l3),
            )?;
        }
        for node in 0..self.numa_cores.len() {
            w(
                &format!("sys/devices/system/node/node{node}/cpulist"),
                &crate::cpulist::format(&self.cpus_of(&self.numa_cores, node)),
            )?;
        }
        let mut xml = String::from("<?xml version=\"1.0\" ?>\n<nvidia_smi_log>\n<driver_version>580.159.04</driver_version>\n");
        for (i, node) in self.gpu_numa.iter().enumerate() {
            let bus = format!("00000000:{:02X}:00.0", 0x18 + i * 0x20);
            let sys = format!("sys/bus/pci/devices/0000:{:02x}:00.0", 0x18 + i * 0x20);
            w(&format!("{sys}/numa_node"), &node.to_string())?;
            w(
                &format!("{sys}/local_cpulist"),
                &crate::cpulist::format(&self.cpus_of(&self.numa_cores, *node as usize)),
            )?;
            xml.push_str(&format!(
                "<gpu id=\"{bus}\"><product_name>Synthetic GPU</product_name><persistence_mode>Enabled</persistence_mode>\
                 <uuid>GPU-5e5e5e5e-0000-0000-0000-{i:012}</uuid><minor_number>{i}</minor_number>\
                 <fb_memory_usage><total>{m} MiB</total><used>0 MiB</used><free>{m} MiB</free></fb_memory_usage>\
                 <ecc_errors><volatile><dram_uncorrectable>0</dram_uncorrectable></volatile><aggregate><dram_uncorrectable>0</dram_uncorrectable></aggregate></ecc_errors>\
                 <remapped_rows><remapped_row_pending>No</remapped_row_pending></remapped_rows><processes></processes></gpu>\n",
                m = self.gpu_memory_mib
            ));
        }
        xml.push_str("</nvidia_smi_log>\n");
        std::fs::write(root.join(crate::SMI_CAPTURE), xml)
    }
}
