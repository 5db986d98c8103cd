//! `steward doctor`: one line per check, each with what was seen and the fix, naming the
//! config key or command. Pure: host facts, the config and its plan go in, findings come
//! out. The one effect, asking the DNS resolvers, is done by the caller and passed in.

mod checks;

pub use checks::{run, Check, DoctorInputs, Level};
pub use steward_host::DnsAnswer;
