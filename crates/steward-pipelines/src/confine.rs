//! `confine_inputs`: an input must resolve (symlinks and `..` followed) inside the input
//! root or one of the pipeline's `inputs`.

use std::path::{Path, PathBuf};
use steward_config::Pipeline;

pub fn confined(input: &Path, p: &Pipeline) -> Result<(), String> {
    let real = input
        .canonicalize()
        .map_err(|e| format!("input {} cannot be resolved: {e}", input.display()))?;
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
            input.display(),
            real.display(),
            roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
        ))
    }
}
