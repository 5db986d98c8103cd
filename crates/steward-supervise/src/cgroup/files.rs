//! Writing cgroup files and folders, and finding our own group.

use super::error::CgroupError;
use std::fs;
use std::io::Write;
use std::path::Path;

pub(super) fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| CgroupError::Write {
            path: path.to_path_buf(),
            value: value.to_string(),
            source,
        })
}

/// Makes `dir` afresh: an empty group left by an earlier run is removed first.
pub(super) fn fresh_dir(dir: &Path) -> Result<(), CgroupError> {
    if dir.exists() {
        let _ = fs::remove_dir(dir);
    }
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::Create {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// The path of our own group in one hierarchy, from `/proc/self/cgroup`
/// (`N:controllers:/path`; v2 is `0::/path`).
pub(super) fn own_path<'a>(self_cgroup: &'a str, controller: Option<&str>) -> Option<&'a str> {
    self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = match controller {
            None => controllers.is_empty(),
            Some(c) => controllers.split(',').any(|x| x == c),
        };
        hit.then_some(path)
    })
}
