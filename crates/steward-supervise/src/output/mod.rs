//! A service's output: stdout and stderr through one pipe (so their order is kept), pumped
//! into `logs/<service>/output.log`, rotated by size, and read back by `steward logs`.

mod files;
mod pump;
mod reader;

pub use files::{from_position, position, LogFiles, CURRENT};
pub use pump::{pump, OnLogTrouble, Tail};
pub use reader::{follow, print_tail};
