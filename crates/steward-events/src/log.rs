use crate::Event;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error("cannot open event log {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write event log {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `events.jsonl`: one JSON object per line, appended. Each line is written with one
/// `write` on an `O_APPEND` file, so a reader never sees half a line from a crash mid-event.
pub struct EventLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl EventLog {
    pub fn open(path: &Path) -> Result<Self, EventLogError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| EventLogError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(EventLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&self, event: &Event) -> Result<(), EventLogError> {
        let mut line = serde_json::to_vec(event).map_err(|e| EventLogError::Write {
            path: self.path.clone(),
            source: e.into(),
        })?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&line)
            .map_err(|source| EventLogError::Write {
                path: self.path.clone(),
                source,
            })
    }

    /// Reads every event in the file; lines that do not parse (a torn write, a newer
    /// version's event) are skipped rather than failing the whole read.
    pub fn read_all(path: &Path) -> std::io::Result<Vec<Event>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut events = Vec::new();
        for line in BufReader::new(file).lines() {
            if let Ok(event) = serde_json::from_str(&line?) {
                events.push(event);
            }
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventKind, ExitClass};

    #[test]
    fn round_trips_and_skips_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let log = EventLog::open(&path).unwrap();
        let ev = Event::new(
            Some("web"),
            EventKind::Exited {
                pid: 42,
                class: ExitClass::Exited { code: 3 },
                ran_ms: 1500,
                peak_memory: None,
                explain: None,
            },
        );
        log.append(&ev).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"ts\":\"2026-")
            .unwrap();
        let read = EventLog::read_all(&path).unwrap();
        assert_eq!(read, vec![ev]);
        let line = std::fs::read_to_string(&path).unwrap();
        assert!(
            line.contains(r#""event":"exited","pid":42,"class":"exited","code":3"#),
            "{line}"
        );
    }
}
