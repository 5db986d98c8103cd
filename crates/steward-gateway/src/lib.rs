//! The gateway: an OpenAI-compatible HTTP front for inference backends.
//! A request is routed by its `model`, tried on the route's backends by priority, and
//! never waits longer than its timeouts: `connect`, `first_byte` (to the response head),
//! `idle` (between stream chunks) and `total`. A connect error, a 5xx, a 429 or a
//! first-byte timeout moves it to the next backend while nothing has reached the client;
//! after that, a failure ends a stream with an SSE error event, never a silent hang.
//! Streams pass through chunk by chunk; a client that leaves cancels the upstream request.

mod attempt;
mod balance;
mod budget;
mod edge;
mod forward;
mod health;
mod metrics;
mod probe;
mod recent;
mod responses;
mod serve;
mod services;
mod slots;
mod state;
mod try_error;
mod view;

pub use serve::{serve, serve_metrics};
pub use services::ServiceStates;
pub use state::GatewayState;
pub use view::{BackendView, RouteView};
