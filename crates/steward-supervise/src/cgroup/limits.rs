//! The limits one run's group gets.

/// Limits to apply to one service's group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    pub memory: Option<u64>,
    /// Memory plus swap.
    pub memory_swap: Option<u64>,
    pub pids_max: Option<u32>,
    /// CPUs for the cpuset controller, where one is available (affinity is set anyway).
    pub cpus: Option<Vec<usize>>,
}
