//! HTTP plumbing that every listener and prober of steward shares, so that each concern is
//! written once: the server loop ([`serve`]: accept errors backed off, connections drained
//! on shutdown, request heads bounded), request bodies read within a size and a time
//! ([`read_body`]), the one rule for what a health endpoint's answer means ([`verdict`]),
//! a body fed from a channel ([`ChannelBody`]), and an error with its causes on one line
//! ([`one_line`]).

mod body;
mod channel_body;
mod error;
mod probe;
mod server;

pub use body::{json_reply, read_body, BodyError, Reply};
pub use channel_body::ChannelBody;
pub use error::one_line;
pub use probe::{get_status, verdict, Verdict};
pub use server::{serve, stopped, Peer, ServerOptions};
