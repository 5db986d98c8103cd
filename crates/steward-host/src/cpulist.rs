//! The kernel's CPU-list format (`0-3,8`), shared with the config's `cpus` key.

/// Parses `0-3,8` into sorted, de-duplicated CPU numbers.
pub fn parse(text: &str) -> Result<Vec<usize>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    text.parse::<steward_config::CpuList>().map(|l| l.0)
}

/// Formats CPU numbers as the kernel does: `0-3,8`.
pub fn format(cpus: &[usize]) -> String {
    steward_config::CpuList(cpus.to_vec()).to_string()
}
