//! What every instance task shares: the reaper, the cgroup driver, the event log, the GPU
//! locks, and the signal that some instance's state changed.

use crate::cgroup::CgroupDriver;
use crate::kmsg::KernelLog;
use crate::reaper::Reaper;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use steward_events::{Event, EventKind, EventLog, ExitClass, Tally};
use tokio::sync::{broadcast, watch};

pub struct SupervisorContext {
    pub reaper: Arc<Reaper>,
    pub cgroups: Arc<CgroupDriver>,
    pub events: Arc<EventLog>,
    /// `state_dir/logs`.
    pub logs_dir: PathBuf,
    /// Names this agent's cgroups and marks its processes; stable per state dir.
    pub agent_id: String,
    /// Bumped on every state change, so waiters re-check their conditions.
    changes: watch::Sender<u64>,
    gpu_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Every process exit of every instance, for whoever tracks work they held (leases).
    exits: broadcast::Sender<InstanceExit>,
    /// Counts for `/metrics`, kept from the events as they are emitted.
    pub tally: Tally,
    /// Every event as it is emitted, for live views (the dashboard's timeline).
    feed: broadcast::Sender<Event>,
    /// The latest [`RECENT_EVENTS`] events, for a view that opens now.
    recent: Mutex<VecDeque<Event>>,
    /// The kernel's log, once the agent follows it: read when explaining a crash.
    pub kernel: Arc<KernelLog>,
}

/// How many of the latest events the agent keeps in memory for a view that opens.
pub const RECENT_EVENTS: usize = 500;

/// An instance's process ended.
#[derive(Debug, Clone)]
pub struct InstanceExit {
    pub instance: String,
    pub class: ExitClass,
}

impl SupervisorContext {
    pub fn new(
        reaper: Arc<Reaper>,
        cgroups: Arc<CgroupDriver>,
        events: Arc<EventLog>,
        logs_dir: PathBuf,
        agent_id: String,
    ) -> Self {
        SupervisorContext {
            reaper,
            cgroups,
            events,
            logs_dir,
            agent_id,
            changes: watch::channel(0).0,
            gpu_locks: Mutex::new(HashMap::new()),
            exits: broadcast::channel(1024).0,
            tally: Tally::default(),
            feed: broadcast::channel(1024).0,
            recent: Mutex::new(VecDeque::with_capacity(RECENT_EVENTS)),
            kernel: Arc::default(),
        }
    }

    /// Exits of instances from now on.
    pub fn subscribe_exits(&self) -> broadcast::Receiver<InstanceExit> {
        self.exits.subscribe()
    }

    pub(crate) fn exited(&self, instance: &str, class: &ExitClass) {
        let _ = self.exits.send(InstanceExit {
            instance: instance.to_string(),
            class: class.clone(),
        });
    }

    /// Appends to `events.jsonl` and prints the same event on the agent's log.
    pub fn emit(&self, service: Option<&str>, kind: EventKind) {
        self.record(Event::new(service, kind));
    }

    /// As [`Self::emit`], for something that happened at `at` and is written now (an exit
    /// whose explanation was read beside the restart).
    pub fn emit_at(&self, at: std::time::SystemTime, service: Option<&str>, kind: EventKind) {
        self.record(Event::at(at, service, kind));
    }

    fn record(&self, event: Event) {
        tracing::info!("{}", event.summary());
        if let Err(e) = self.events.append(&event) {
            tracing::warn!("{e}");
        }
        self.tally.record(&event);
        {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if recent.len() == RECENT_EVENTS {
                recent.pop_front();
            }
            recent.push_back(event.clone());
        }
        let _ = self.feed.send(event);
    }

    /// Events from now on (a receiver that falls behind by 1,024 skips the oldest).
    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.feed.subscribe()
    }

    /// The latest events, oldest first.
    pub fn recent_events(&self) -> Vec<Event> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().cloned().collect()
    }

    /// Some instance's state changed.
    pub(crate) fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Resolves at each state change of any instance.
    pub(crate) fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The lock that replicas sharing a GPU take, one at a time, while they start.
    pub(crate) fn gpu_lock(&self, uuid: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.gpu_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(uuid.to_string()).or_default().clone()
    }
}
