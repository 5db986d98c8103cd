//! Backends that are steward services take their health from the supervisor instead of
//! HTTP probes: a service is routable while one of its instances runs and is ready.

/// What the supervisor knows of services. The agent implements it; `steward gateway`
/// alone has none, and probes every backend over HTTP.
pub trait ServiceStates: Send + Sync {
    /// `Ok` when a request may go to `service` now; otherwise why not ("stopped",
    /// "starting", "unhealthy: …"), which `/health` shows.
    fn ready(&self, service: &str) -> Result<(), String>;
}
