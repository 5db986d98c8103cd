//! Reading the kernel's small pseudo-files (`/proc/PID/stat`, `memory.current`,
//! `cgroup.procs`) in one `read`: they hand over their whole text at once when the buffer
//! holds it, and `ps` or a scrape reads several per service, for every service. This is
//! three system calls where `fs::read_to_string` makes five.

use std::io::Read;
use std::path::Path;

/// The most a single read takes; a longer file is read on to its end.
const ONE_READ: usize = 4096;

pub fn read(path: impl AsRef<Path>) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut buf = vec![0u8; ONE_READ];
    let mut len = 0;
    loop {
        let n = f.read(&mut buf[len..]).ok()?;
        len += n;
        // A short read of a pseudo-file is its whole text; a full buffer may have more.
        if n == 0 || len < buf.len() {
            break;
        }
        buf.resize(buf.len() * 2, 0);
    }
    buf.truncate(len);
    String::from_utf8(buf).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_short_pseudo_file_and_a_long_one_whole() {
        let stat = super::read("/proc/self/stat").unwrap();
        assert!(stat.ends_with('\n') && stat.contains(')'), "{stat}");
        let dir = tempfile::tempdir().unwrap();
        let long: String = "x".repeat(10_000);
        std::fs::write(dir.path().join("f"), &long).unwrap();
        assert_eq!(super::read(dir.path().join("f")).unwrap(), long);
        assert!(super::read(dir.path().join("missing")).is_none());
    }
}
