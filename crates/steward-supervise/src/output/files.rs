//! The log files of one service: `output.log`, rotated by size into `output.log.1` (the
//! newest old file), `.2`, … up to `keep`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use steward_config::LogRotation;

pub const CURRENT: &str = "output.log";

pub struct LogFiles {
    dir: PathBuf,
    rotation: LogRotation,
    file: File,
    size: u64,
}

impl LogFiles {
    pub fn open(dir: &Path, rotation: LogRotation) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let path = dir.join(CURRENT);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(LogFiles {
            dir: dir.to_path_buf(),
            rotation,
            file,
            size,
        })
    }

    /// The files of a service's log, oldest first.
    pub fn paths_oldest_first(dir: &Path) -> Vec<PathBuf> {
        let mut rotated: Vec<(u32, PathBuf)> = fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| {
                        let name = e.file_name().into_string().ok()?;
                        let n = name.strip_prefix("output.log.")?.parse().ok()?;
                        Some((n, e.path()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
        let mut paths: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
        let current = dir.join(CURRENT);
        if current.exists() {
            paths.push(current);
        }
        paths
    }

    /// Appends `buf`, rotating so that no file grows past `max_size`. Files are cut after a
    /// newline where one fits, so lines stay whole; a line longer than `max_size` is split.
    /// The last `bytes` of the current log file (what a crash left behind).
    pub fn tail(&self, bytes: u64) -> Vec<u8> {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = File::open(self.dir.join(CURRENT)) else {
            return Vec::new();
        };
        let len = f.metadata().map_or(0, |m| m.len());
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(bytes)));
        let mut out = Vec::new();
        let _ = f.take(bytes).read_to_end(&mut out);
        out
    }

    pub fn write(&mut self, mut buf: &[u8]) -> io::Result<()> {
        let max = self.rotation.max_size.bytes();
        while !buf.is_empty() {
            let room = max.saturating_sub(self.size) as usize;
            if buf.len() <= room {
                self.append(buf)?;
                return Ok(());
            }
            let cut = match buf[..room].iter().rposition(|&b| b == b'\n') {
                Some(nl) => nl + 1,
                None if self.size > 0 => 0,
                None => room,
            };
            self.append(&buf[..cut])?;
            buf = &buf[cut..];
            self.rotate()?;
        }
        Ok(())
    }

    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.rotation.keep;
        let name = |n: u32| self.dir.join(format!("{CURRENT}.{n}"));
        let _ = fs::remove_file(name(keep.max(1)));
        for n in (1..keep).rev() {
            let _ = fs::rename(name(n), name(n + 1));
        }
        let current = self.dir.join(CURRENT);
        if keep == 0 {
            fs::remove_file(&current)?;
        } else {
            fs::rename(&current, name(1))?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&current)?;
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward_config::ByteSize;

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogFiles::open(
            dir.path(),
            LogRotation {
                max_size: ByteSize(10),
                keep: 2,
            },
        )
        .unwrap();
        log.write(b"aaaaaaaa\nbbbbbbbb\n").unwrap();
        log.write(b"cccccccc\ndddddddd\n").unwrap();
        let paths = LogFiles::paths_oldest_first(dir.path());
        let contents: Vec<String> = paths
            .iter()
            .map(|p| fs::read_to_string(p).unwrap())
            .collect();
        assert_eq!(contents, vec!["bbbbbbbb\n", "cccccccc\n", "dddddddd\n"]);
        // A line longer than max_size is split rather than overflowing a file.
        log.write(b"0123456789012345").unwrap();
        let sizes: Vec<u64> = LogFiles::paths_oldest_first(dir.path())
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .collect();
        assert!(sizes.iter().all(|&n| n <= 10), "{sizes:?}");
    }
}
