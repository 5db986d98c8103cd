//! The supervisor's hold on one instance: its plan, the sending half of its task's channel
//! and the reading half of its state.

use crate::context::SupervisorContext;
use crate::error::SuperviseError;
use crate::output::LogFiles;
use crate::service::{Control, Task, TaskState};
use std::sync::Arc;
use steward_config::Service;
use steward_plan::Instance;
use tokio::sync::{mpsc, oneshot, watch};

#[derive(Clone)]
pub(crate) struct Handle {
    pub inst: Arc<Instance>,
    pub service: Arc<Service>,
    pub unit: String,
    pub tx: mpsc::Sender<Control>,
    /// The task's state; only the task writes it.
    pub state: watch::Receiver<TaskState>,
}

impl Handle {
    /// Starts the task of `inst` (stopped until told to start).
    pub fn spawn(
        ctx: &Arc<SupervisorContext>,
        inst: Arc<Instance>,
        svc: Arc<Service>,
    ) -> Result<Handle, SuperviseError> {
        let dir = ctx.logs_dir.join(&inst.name);
        let logs = LogFiles::open(&dir, svc.log)
            .map_err(|source| SuperviseError::Logs { path: dir, source })?;
        let (tx, rx) = mpsc::channel(16);
        let (state_tx, state) = watch::channel(TaskState::new());
        let unit = format!("{}/{}", ctx.agent_id, inst.name);
        let task = Task::new(inst.clone(), svc.clone(), ctx.clone(), rx, state_tx, logs);
        tokio::spawn(task.run());
        Ok(Handle {
            inst,
            service: svc,
            unit,
            tx,
            state,
        })
    }

    pub fn read<T>(&self, f: impl FnOnce(&TaskState) -> T) -> T {
        f(&self.state.borrow())
    }

    pub async fn send(
        &self,
        make: fn(oneshot::Sender<()>) -> Control,
    ) -> Result<(), SuperviseError> {
        let (done, wait) = oneshot::channel();
        let gone = || SuperviseError::TaskGone(self.inst.name.clone());
        self.tx.send(make(done)).await.map_err(|_| gone())?;
        wait.await.map_err(|_| gone())
    }
}
