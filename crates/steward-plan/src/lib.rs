//! The plan: config + host facts in, placement and an admission verdict out. Pure
//! functions; `up` runs the plan it is given, `steward plan` prints it.

mod admission;
mod instances;
mod placement;
mod render;

pub use admission::{default_reserve, Admission, AdmissionInputs, MemoryLine, Refusal};
pub use instances::{instances, Instance, PlanError};
pub use render::render;

use serde::Serialize;
use steward_config::Config;

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub instances: Vec<Instance>,
    pub admission: Admission,
}

/// Places every replica and checks that the whole fits the host.
pub fn plan(config: &Config, input: &AdmissionInputs) -> Result<Plan, PlanError> {
    let mut instances = instances(config, input.gpus)?;
    let mut notes = placement::PlacementNotes::default();
    if let Some(topo) = input.cpu {
        notes = placement::place(config, topo, &mut instances);
    } else if config
        .services
        .values()
        .any(|s| s.cpus_per_replica.is_some())
    {
        notes
            .warnings
            .push("cpus_per_replica ignored: this host's CPU topology could not be read".into());
    }
    let mut admission = admission::admit(config, &instances, input);
    admission.refusals.extend(
        notes
            .refusals
            .into_iter()
            .map(|(key, message)| Refusal { key, message }),
    );
    admission.warnings.extend(notes.warnings);
    admission.admitted = admission.refusals.is_empty();
    Ok(Plan {
        instances,
        admission,
    })
}
