//! What a reload changes: services in the new config and not in the old are started,
//! those gone are stopped, those whose settings or placement changed are restarted, the
//! rest keep running untouched. A pure comparison, tested without processes.

use std::collections::{BTreeMap, BTreeSet};
use steward_config::Service;
use steward_plan::Instance;

/// One service as a reload compares it: its settings and its instances' placement.
pub(crate) struct Side<'a> {
    pub services: BTreeMap<&'a str, &'a Service>,
    pub instances: Vec<&'a Instance>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    pub added: BTreeSet<String>,
    pub removed: BTreeSet<String>,
    pub changed: BTreeSet<String>,
    pub unchanged: BTreeSet<String>,
}

/// The parts of an instance that make it a different run: not the GPU's live memory use,
/// which changes by itself between two plans.
fn placement(i: &Instance) -> impl PartialEq + '_ {
    (
        &i.name,
        i.replica,
        i.gpu.as_ref().map(|g| &g.uuid),
        &i.cpus,
        i.memory,
        i.gpu_memory,
        i.pids_max,
        &i.env,
    )
}

/// The instances of `service` on one side.
fn of<'a>(side: &Side<'a>, service: &str) -> Vec<&'a Instance> {
    side.instances
        .iter()
        .copied()
        .filter(|i| i.service == service)
        .collect()
}

pub(crate) fn diff(old: &Side, new: &Side) -> Changes {
    let mut changes = Changes::default();
    let names: BTreeSet<&str> = old
        .services
        .keys()
        .chain(new.services.keys())
        .copied()
        .collect();
    for name in names {
        let slot = match (old.services.get(name), new.services.get(name)) {
            (Some(_), None) => &mut changes.removed,
            (None, Some(_)) => &mut changes.added,
            (Some(a), Some(b)) => {
                let (ia, ib) = (of(old, name), of(new, name));
                let same = a == b
                    && ia.len() == ib.len()
                    && ia
                        .iter()
                        .zip(&ib)
                        .all(|(x, y)| placement(x) == placement(y));
                if same {
                    &mut changes.unchanged
                } else {
                    &mut changes.changed
                }
            }
            (None, None) => continue,
        };
        slot.insert(name.to_string());
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> steward_config::Config {
        steward_config::parse(text, Path::new("/srv/steward.toml")).unwrap()
    }

    fn side<'a>(c: &'a steward_config::Config, i: &'a [Instance]) -> Side<'a> {
        Side {
            services: c
                .services
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_ref()))
                .collect(),
            instances: i.iter().collect(),
        }
    }

    #[test]
    fn added_removed_changed_and_kept_services_are_told_apart() {
        let gpus = steward_host::GpuInventory::fake(0);
        let before = config("[services.a]\ncommand = [\"x\"]\n[services.b]\ncommand = [\"x\"]\n[services.c]\ncommand = [\"x\"]\n");
        let after = config("[services.a]\ncommand = [\"x\"]\n[services.b]\ncommand = [\"y\"]\n[services.d]\ncommand = [\"x\"]\n[services.c]\ncommand = [\"x\"]\nreplicas = 2\n");
        let (ib, ia) = (
            steward_plan::instances(&before, &gpus).unwrap(),
            steward_plan::instances(&after, &gpus).unwrap(),
        );
        let c = diff(&side(&before, &ib), &side(&after, &ia));
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(c.unchanged, set(&["a"]));
        assert_eq!(c.changed, set(&["b", "c"]), "a new command, more replicas");
        assert_eq!(c.added, set(&["d"]));
        assert!(c.removed.is_empty());
        let c = diff(&side(&after, &ia), &side(&before, &ib));
        assert_eq!(c.removed, set(&["d"]));
    }
}
