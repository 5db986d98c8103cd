//! The import's report: one decision per line, each naming the service and the compose key
//! it is about, what became of it, and why or what to do.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum What {
    /// Taken over as it was meant.
    Mapped,
    /// Taken over, written differently (a unit made explicit, a form changed).
    Changed,
    /// Left out on purpose: steward does it itself, or it does not apply to a host process.
    Dropped,
    /// Cannot be taken over: what to do instead, or that steward does not do this.
    CannotMap,
    /// Services made one (a worker chain).
    Collapsed,
    /// Needs a person: the service is written commented out, with what to fill in.
    Todo,
}

impl What {
    pub fn label(self) -> &'static str {
        match self {
            What::Mapped => "mapped",
            What::Changed => "changed",
            What::Dropped => "dropped",
            What::CannotMap => "cannot map",
            What::Collapsed => "collapsed",
            What::Todo => "todo",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The compose service; `None` for the file as a whole.
    pub service: Option<String>,
    /// The compose key, such as `mem_limit` or `deploy.resources.limits.memory`.
    pub key: String,
    pub what: What,
    pub note: String,
}

/// The decisions as lines for a person: the same decision about several services (the
/// workers of a chain, say) is one line naming them.
pub fn lines(decisions: &[Decision]) -> Vec<String> {
    let mut groups: Vec<(&Decision, Vec<&str>)> = Vec::new();
    for d in decisions {
        let same = |g: &&mut (&Decision, Vec<&str>)| {
            g.0.key == d.key && g.0.what == d.what && g.0.note == d.note
        };
        match (groups.iter_mut().find(same), &d.service) {
            (Some(g), Some(s)) if g.0.service.is_some() => g.1.push(s),
            _ => groups.push((d, d.service.iter().map(String::as_str).collect())),
        }
    }
    groups
        .into_iter()
        .map(|(d, services)| {
            let who = match services.as_slice() {
                [] => String::new(),
                [one] => format!("{one}: "),
                [first, rest @ ..] => format!("{first} and {} more: ", rest.len()),
            };
            format!("{who}{}: {}: {}", d.key, d.what.label(), d.note)
        })
        .collect()
}

/// Decisions as they are made, for one service or the file.
#[derive(Debug, Default)]
pub struct Report(pub Vec<Decision>);

impl Report {
    pub fn add(&mut self, service: Option<&str>, key: &str, what: What, note: impl Into<String>) {
        self.0.push(Decision {
            service: service.map(str::to_string),
            key: key.to_string(),
            what,
            note: note.into(),
        });
    }
}
