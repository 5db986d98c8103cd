//! The log files of one service: `output.log`, rotated by size into `output.log.1` (the
//! newest old file), `.2`, … up to `keep`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use steward_config::LogRotation;

/// How often a writer checks that `output.log` is still the file it writes to: an operator
/// who deletes it to free space gets a fresh one within this, not a deleted inode that
/// keeps filling the disk.
const RECHECK: Duration = Duration::from_secs(1);

pub const CURRENT: &str = "output.log";

/// How many bytes rotation has deleted from this log, ever: with the kept files' sizes it
/// makes a position in everything the service ever printed, which does not move when the
/// files rotate (a run's start, recorded in its `started` event).
const DROPPED: &str = "dropped-bytes";

pub struct LogFiles {
    dir: PathBuf,
    rotation: LogRotation,
    file: File,
    size: u64,
    /// The inode of `file`, to tell it from what is at `output.log` now.
    ino: u64,
    checked: Instant,
}

impl LogFiles {
    pub fn open(dir: &Path, rotation: LogRotation) -> io::Result<Self> {
        let (file, size, ino) = open_current(dir)?;
        Ok(LogFiles {
            dir: dir.to_path_buf(),
            rotation,
            file,
            size,
            ino,
            checked: Instant::now(),
        })
    }

    /// Opens `output.log` afresh when the one written to is no longer there (deleted, or
    /// moved by someone else's rotation). True when it did.
    pub fn reopen_if_gone(&mut self) -> io::Result<bool> {
        self.checked = Instant::now();
        let now = fs::metadata(self.dir.join(CURRENT)).ok().map(|m| m.ino());
        if now == Some(self.ino) {
            return Ok(false);
        }
        let (file, size, ino) = open_current(&self.dir)?;
        (self.file, self.size, self.ino) = (file, size, ino);
        Ok(true)
    }

    /// Where the next byte goes, counted over everything the service ever printed here.
    pub fn position(&self) -> u64 {
        position(&self.dir)
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

    /// Appends `buf`, rotating so that no file grows past `max_size`. Files are cut after a
    /// newline where one fits, so lines stay whole; a line longer than `max_size` is split.
    pub fn write(&mut self, mut buf: &[u8]) -> io::Result<()> {
        if self.checked.elapsed() >= RECHECK {
            self.reopen_if_gone()?;
        }
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
        let going = if keep == 0 {
            self.dir.join(CURRENT)
        } else {
            name(keep)
        };
        if let Ok(m) = fs::metadata(&going) {
            let before = dropped(&self.dir);
            let _ = fs::write(self.dir.join(DROPPED), (before + m.len()).to_string());
        }
        let _ = fs::remove_file(name(keep.max(1)));
        for n in (1..keep).rev() {
            let _ = fs::rename(name(n), name(n + 1));
        }
        let current = self.dir.join(CURRENT);
        // The file may have been deleted meanwhile; a fresh one is opened either way.
        let gone = |e: io::Error| match e.kind() {
            io::ErrorKind::NotFound => Ok(()),
            _ => Err(e),
        };
        if keep == 0 {
            fs::remove_file(&current).or_else(gone)?;
        } else {
            fs::rename(&current, name(1)).or_else(gone)?;
        }
        let (file, size, ino) = open_current(&self.dir)?;
        (self.file, self.size, self.ino) = (file, size, ino);
        Ok(())
    }
}

/// `dir/output.log`, opened for appending (created, with `dir`, if missing): the file,
/// its size and its inode.
fn dropped(dir: &Path) -> u64 {
    fs::read_to_string(dir.join(DROPPED))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// [`LogFiles::position`] of the log in `dir`, for a reader.
pub fn position(dir: &Path) -> u64 {
    dropped(dir)
        + LogFiles::paths_oldest_first(dir)
            .iter()
            .filter_map(|p| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum::<u64>()
}

/// The kept files, oldest first, to read from `at` (a [`position`]) on: each with how many
/// of its first bytes to skip. From the oldest kept byte when `at` was rotated away.
pub fn from_position(dir: &Path, at: u64) -> Vec<(PathBuf, u64)> {
    let mut skip = at.saturating_sub(dropped(dir));
    let mut out = Vec::new();
    for p in LogFiles::paths_oldest_first(dir) {
        let len = fs::metadata(&p).map_or(0, |m| m.len());
        if skip >= len {
            skip -= len;
            continue;
        }
        out.push((p, skip));
        skip = 0;
    }
    out
}

fn open_current(dir: &Path) -> io::Result<(File, u64, u64)> {
    fs::create_dir_all(dir)?;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(CURRENT))?;
    let meta = file.metadata()?;
    Ok((file, meta.len(), meta.ino()))
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

#[cfg(test)]
mod position_tests {
    use super::*;

    #[test]
    fn a_position_survives_rotation_and_reads_back_from_where_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = LogRotation {
            max_size: steward_config::ByteSize(10),
            keep: 1,
        };
        let mut log = LogFiles::open(dir.path(), rotation).unwrap();
        log.write(b"aaaa\nbbbb\n").unwrap();
        let at = log.position();
        assert_eq!(at, 10);
        // Two rotations later the first file is gone; the position still means "after bbbb".
        log.write(b"cccc\ndddd\neeee\n").unwrap();
        let read: Vec<u8> = from_position(dir.path(), at)
            .iter()
            .flat_map(|(p, skip)| fs::read(p).unwrap()[*skip as usize..].to_vec())
            .collect();
        assert_eq!(String::from_utf8(read).unwrap(), "cccc\ndddd\neeee\n");
        assert_eq!(log.position(), 25);
        assert!(from_position(dir.path(), 25).is_empty());
    }
}
