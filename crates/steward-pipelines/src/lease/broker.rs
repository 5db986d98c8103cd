//! What the lease API and the lease watch share: the queue, the lease-mode pipelines by
//! queue, this agent run's owner prefix, and the wake-up for long polls.

use crate::runner::PipelineRunner;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use steward_queue::JobStore;
use steward_supervise::Supervisor;
use tokio::sync::Notify;

/// A lease lives this long without a heartbeat.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

pub struct LeaseBroker {
    pub(crate) store: Arc<dyn JobStore>,
    pub(crate) supervisor: Arc<Supervisor>,
    /// Lease-mode pipelines by queue.
    pub(crate) runners: BTreeMap<String, Arc<PipelineRunner>>,
    pub(crate) owner_prefix: String,
    /// Each replica's secret (`STEWARD_TOKEN`) -> the replica.
    tokens: BTreeMap<String, String>,
    /// Woken when a job may have become available.
    pub(crate) wake: Notify,
}

impl LeaseBroker {
    pub fn new(
        store: Arc<dyn JobStore>,
        supervisor: Arc<Supervisor>,
        runners: Vec<Arc<PipelineRunner>>,
        owner_prefix: String,
        tokens: BTreeMap<String, String>,
    ) -> Arc<Self> {
        Arc::new(LeaseBroker {
            store,
            supervisor,
            runners: runners
                .into_iter()
                .map(|r| (r.pipeline().queue.clone(), r))
                .collect(),
            owner_prefix,
            tokens,
            wake: Notify::new(),
        })
    }

    /// The replica a request's bearer token belongs to.
    pub(crate) fn replica_of_token(&self, token: &str) -> Option<&str> {
        self.tokens.get(token).map(String::as_str)
    }

    /// The pipeline whose replica `instance` is.
    pub(crate) fn runner_of_instance(&self, instance: &str) -> Option<&Arc<PipelineRunner>> {
        self.runners
            .values()
            .find(|r| r.instances.iter().any(|i| i.name == instance))
    }

    /// The lease owner a replica's requests act as.
    pub(crate) fn owner(&self, instance: &str) -> String {
        format!("{}{instance}", self.owner_prefix)
    }

    /// The replica an owner names.
    pub(crate) fn instance_of<'a>(&self, owner: &'a str) -> &'a str {
        owner.strip_prefix(&self.owner_prefix).unwrap_or(owner)
    }
}
