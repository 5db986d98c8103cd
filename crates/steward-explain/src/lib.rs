//! `explain`: text in, findings out. One pass of a `RegexSet` over the lines finds every
//! known signature; the findings are ranked so that a real cause comes before its
//! symptoms and before the noise; lines that look like errors but match nothing are
//! collapsed into templates and reported below the known causes.
//!
//! Pure: no files, no clock (a live watch is handed the time). The CLI and the supervisor
//! feed it lines.

mod catalogue;
mod explainer;
mod kernel;
mod line;
mod live;
mod since;
mod templates;
mod timestamp;
mod xid;

pub use catalogue::{catalogue, Catalogue, Signature};
pub use explainer::{baseline_category, explain_text, Explainer, Finding, Report};
pub use kernel::{segfault_in, OomKill, OomReader};
pub use live::{LiveFinding, LiveWatch, REPORT_EVERY};
pub use since::{parse_since, Since};
pub use templates::Template;
pub use timestamp::line_time;
pub use xid::{
    code_from_words as xid_code_from_words, code_in as xid_code_in, meaning as xid_meaning,
    pci_in as xid_pci_in, pid_in as xid_pid_in, same_pci,
};
