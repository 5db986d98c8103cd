//! Moving (or linking) a poison input aside, with every attempt's reason beside it.

use serde::Serialize;
use std::path::{Path, PathBuf};
use steward_config::QuarantineMode;
use steward_queue::{Attempt, Job};

#[derive(Serialize)]
struct Reason<'a> {
    job: &'a Job,
    attempts: &'a [Attempt],
}

/// Puts `input` in `dir` and writes `<name>.reason.json`. Returns where the input went.
pub fn quarantine(
    dir: &Path,
    mode: QuarantineMode,
    input: &Path,
    job: &Job,
    attempts: &[Attempt],
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let name = input
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| format!("job-{}", job.id).into());
    let dest = dir.join(&name);
    match mode {
        QuarantineMode::Link => {
            std::fs::hard_link(input, &dest).or_else(|_| std::fs::copy(input, &dest).map(drop))?
        }
        QuarantineMode::Move => {
            if std::fs::rename(input, &dest).is_err() {
                // Across filesystems: copy, then remove.
                std::fs::copy(input, &dest)?;
                std::fs::remove_file(input)?;
            }
        }
    }
    let mut reason_name = name;
    reason_name.push(".reason.json");
    let json =
        serde_json::to_vec_pretty(&Reason { job, attempts }).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!(".{}.tmp", job.id));
    std::fs::write(&tmp, json)?;
    std::fs::rename(tmp, dir.join(reason_name))?;
    Ok(dest)
}
