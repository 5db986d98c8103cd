use serde::{Deserialize, Serialize};
use steward_events::ExitClass;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Pending,
    Running,
    Succeeded,
    Retrying,
    Quarantined,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Pending,
        JobState::Running,
        JobState::Succeeded,
        JobState::Retrying,
        JobState::Quarantined,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Retrying => "retrying",
            JobState::Quarantined => "quarantined",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("\"{s}\" is not a job state; use one of pending, running, succeeded, retrying, quarantined, cancelled"))
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    pub queue: String,
    pub key: String,
    /// At least `{"input": PATH}` for a file job.
    pub payload: serde_json::Value,
    pub priority: i64,
    pub max_attempts: u32,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: i64,
    pub queue: String,
    pub key: String,
    pub payload: serde_json::Value,
    pub priority: i64,
    pub state: JobState,
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_after: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub timeout_ms: Option<u64>,
    pub progress: Option<f64>,
    pub progress_message: Option<String>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// A file job's payload: `{"input": PATH}`. A path that is not UTF-8 is kept byte for
/// byte in `input_hex`, and `input` shows it escaped.
pub fn file_payload(path: &std::path::Path) -> serde_json::Value {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::json!({ "input": text }),
        Err(_) => serde_json::json!({
            "input": steward_config::escaped(bytes),
            "input_hex": hex(bytes),
        }),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Job {
    /// The `input` of a file job's payload, as text to show (escaped when the path is not
    /// UTF-8).
    pub fn input(&self) -> Option<&str> {
        self.payload.get("input").and_then(|v| v.as_str())
    }

    /// The input file itself, byte for byte.
    pub fn input_path(&self) -> Option<std::path::PathBuf> {
        use std::os::unix::ffi::OsStringExt;
        if let Some(h) = self.payload.get("input_hex").and_then(|v| v.as_str()) {
            return unhex(h).map(|b| std::ffi::OsString::from_vec(b).into());
        }
        self.input().map(std::path::PathBuf::from)
    }

    /// The lease this job is held under, while it runs.
    pub fn lease(&self) -> Option<Lease> {
        let owner = self.lease_owner.clone()?;
        (self.state == JobState::Running).then_some(Lease {
            job: self.id,
            attempt: self.attempts,
            owner,
        })
    }
}

/// Who holds a running job, and for which attempt: every transition of a running job
/// names it, so an answer from a lease that has since been lost (expired and given to
/// another worker) changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lease {
    pub job: i64,
    pub attempt: u32,
    pub owner: String,
}

/// One attempt at a job, as recorded when it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub n: u32,
    pub owner: Option<String>,
    pub started_at: Option<i64>,
    pub ended_at: i64,
    pub class: Option<ExitClass>,
    pub error: Option<String>,
    pub stderr_tail: Option<String>,
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub class: ExitClass,
    pub error: String,
    pub stderr_tail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum EnqueueOutcome {
    Inserted {
        id: i64,
    },
    AlreadyQueued {
        id: i64,
    },
    /// Its key already succeeded: the done-set.
    AlreadyDone {
        id: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum FailOutcome {
    Retrying {
        run_after: i64,
        attempts: u32,
    },
    Quarantined {
        attempts: u32,
    },
    /// The lease was no longer the caller's; nothing changed.
    NotLeased,
}

/// How many jobs are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub pending: u64,
    pub running: u64,
    pub succeeded: u64,
    pub retrying: u64,
    pub quarantined: u64,
    pub cancelled: u64,
}

impl Counts {
    pub fn of(&self, state: JobState) -> u64 {
        match state {
            JobState::Pending => self.pending,
            JobState::Running => self.running,
            JobState::Succeeded => self.succeeded,
            JobState::Retrying => self.retrying,
            JobState::Quarantined => self.quarantined,
            JobState::Cancelled => self.cancelled,
        }
    }

    pub fn add(&mut self, state: JobState, n: u64) {
        let slot = match state {
            JobState::Pending => &mut self.pending,
            JobState::Running => &mut self.running,
            JobState::Succeeded => &mut self.succeeded,
            JobState::Retrying => &mut self.retrying,
            JobState::Quarantined => &mut self.quarantined,
            JobState::Cancelled => &mut self.cancelled,
        };
        *slot += n;
    }

    pub fn total(&self) -> u64 {
        JobState::ALL.iter().map(|s| self.of(*s)).sum()
    }

    /// Jobs that still have to run: pending, retrying or running.
    pub fn unfinished(&self) -> u64 {
        self.pending + self.retrying + self.running
    }

    /// Jobs that are over: succeeded, quarantined or cancelled.
    pub fn finished(&self) -> u64 {
        self.succeeded + self.quarantined + self.cancelled
    }
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        for st in JobState::ALL {
            self.add(st, other.of(st));
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub queue: Option<String>,
    pub counts: Counts,
    /// Jobs that succeeded in the last minute.
    pub succeeded_last_minute: u64,
    /// Seconds until the queue is empty at the last minute's rate.
    pub eta_seconds: Option<u64>,
    pub oldest_running: Option<Job>,
}

/// Which jobs a listing (or a bulk retry or cancel) means.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub queue: Option<String>,
    pub state: Option<JobState>,
    /// Jobs whose key or input contains this text.
    pub text: Option<String>,
    /// At most this many, oldest first.
    pub limit: Option<usize>,
}

impl JobFilter {
    pub fn queue(queue: &str) -> Self {
        JobFilter {
            queue: Some(queue.to_string()),
            ..Default::default()
        }
    }

    pub fn state(mut self, state: JobState) -> Self {
        self.state = Some(state);
        self
    }
}

/// The jobs a bulk operation acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Ids(Vec<i64>),
    Matching(JobFilter),
}

/// Refuses text that a store cannot hold: PostgreSQL's text has no NUL byte, so no store
/// takes one (the same queue names work everywhere).
pub(crate) fn no_nul(what: &str, text: &str) -> Result<(), crate::QueueError> {
    if text.contains('\0') {
        return Err(crate::QueueError::Invalid(format!(
            "{what} {:?} holds a NUL byte, which the queue cannot store",
            text.replace('\0', "\\0")
        )));
    }
    Ok(())
}

/// [`no_nul`] for everything a new job carries.
pub(crate) fn check_new_job(j: &NewJob) -> Result<(), crate::QueueError> {
    no_nul("queue name", &j.queue)?;
    no_nul("job key", &j.key)?;
    if j.payload.to_string().contains("\\u0000") {
        return Err(crate::QueueError::Invalid(format!(
            "the payload of job {:?} holds a NUL byte, which the queue cannot store",
            j.key
        )));
    }
    Ok(())
}
