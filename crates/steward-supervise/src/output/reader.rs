//! Reading a service's log back: its last lines across rotated files, and following it as
//! it grows, across rotations, without losing a line (as `tail -F` does).

use super::files::{LogFiles, CURRENT};
use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// How often a followed log is checked for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Writes the whole log (oldest file first), or only its last `lines` lines.
pub fn print_tail(dir: &Path, lines: Option<usize>, out: &mut impl Write) -> io::Result<()> {
    let files = LogFiles::paths_oldest_first(dir);
    let Some(n) = lines else {
        for path in &files {
            io::copy(&mut File::open(path)?, out)?;
        }
        return out.flush();
    };
    // Files are read newest first until n lines are found, so a long history is not read
    // for a short tail.
    let mut kept: std::collections::VecDeque<Vec<u8>> = std::collections::VecDeque::new();
    for path in files.iter().rev() {
        let mut file_lines = Vec::new();
        for line in io::BufReader::new(File::open(path)?).split(b'\n') {
            file_lines.push(line?);
        }
        for line in file_lines.into_iter().rev() {
            if kept.len() == n {
                break;
            }
            kept.push_front(line);
        }
        if kept.len() == n {
            break;
        }
    }
    for line in kept {
        out.write_all(&line)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Writes what is appended to the log from now on, until writing fails (the reader went
/// away). When the current file is rotated, the rest of it is read before the new file,
/// and so are whole files rotated in between; a deleted log is waited for.
pub fn follow(dir: &Path, out: &mut impl Write) -> io::Result<()> {
    let current = dir.join(CURRENT);
    let mut open: Option<(File, u64)> = None;
    if let Ok(mut f) = File::open(&current) {
        let ino = f.metadata()?.ino();
        f.seek(SeekFrom::End(0))?;
        open = Some((f, ino));
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Some((file, _)) = open.as_mut() {
            if copy_available(file, &mut buf, out)? {
                continue;
            }
        }
        std::thread::sleep(FOLLOW_POLL);
        let now = std::fs::metadata(&current).ok().map(|m| m.ino());
        match (&mut open, now) {
            (Some((_, ino)), Some(new)) if *ino == new => {}
            (Some((file, ino)), Some(new)) => {
                // Rotated: the rest of the old file, then files rotated since, then the new.
                copy_available(file, &mut buf, out)?;
                for path in rotated_after(dir, *ino) {
                    io::copy(&mut File::open(path)?, out)?;
                }
                open = File::open(&current).ok().map(|f| (f, new));
            }
            (None, Some(new)) => open = File::open(&current).ok().map(|f| (f, new)),
            (_, None) => {} // deleted (or between rename and create): wait for it
        }
    }
}

/// Copies what can be read now; false when there was nothing.
fn copy_available(file: &mut File, buf: &mut [u8], out: &mut impl Write) -> io::Result<bool> {
    let mut any = false;
    loop {
        let n = file.read(buf)?;
        if n == 0 {
            if any {
                out.flush()?;
            }
            return Ok(any);
        }
        out.write_all(&buf[..n])?;
        any = true;
    }
}

/// The rotated files newer than the one whose inode is `ino`, oldest first. Empty when
/// that file is gone (rotated out of `keep`, or `keep = 0`).
fn rotated_after(dir: &Path, ino: u64) -> Vec<std::path::PathBuf> {
    let mut files = LogFiles::paths_oldest_first(dir);
    files.retain(|p| p.file_name().is_some_and(|n| n != CURRENT));
    match files
        .iter()
        .position(|p| std::fs::metadata(p).is_ok_and(|m| m.ino() == ino))
    {
        Some(i) => files.split_off(i + 1),
        None => Vec::new(),
    }
}
