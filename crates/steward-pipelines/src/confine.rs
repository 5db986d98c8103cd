//! `confine_inputs`: an input must resolve (symlinks and `..` followed) inside the input
//! root or one of the pipeline's `inputs`.

use std::path::{Path, PathBuf};
use steward_config::{escaped_os, Pipeline};

pub fn confined(input: &Path, p: &Pipeline) -> Result<(), String> {
    let shown = |p: &Path| escaped_os(p.as_os_str());
    let real = input
        .canonicalize()
        .map_err(|e| format!("input {} cannot be resolved: {e}", shown(input)))?;
    let roots: Vec<PathBuf> = p
        .input_root
        .iter()
        .chain(p.inputs.iter())
        .filter_map(|r| r.canonicalize().ok())
        .collect();
    if roots.iter().any(|r| real.starts_with(r)) {
        Ok(())
    } else {
        Err(format!(
            "input {} resolves to {}, outside the input root ({}); refused because confine_inputs = true",
            shown(input),
            shown(&real),
            roots.iter().map(|r| shown(r)).collect::<Vec<_>>().join(", ")
        ))
    }
}
