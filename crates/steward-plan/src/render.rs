//! The plan as `steward plan` prints it: a placement table and the admission account.

use crate::Plan;
use comfy_table::{presets, CellAlignment, Table};
use steward_config::ByteSize;

fn size(bytes: Option<u64>) -> String {
    bytes.map_or("-".into(), |b| ByteSize(b).both())
}

pub fn render(plan: &Plan) -> String {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(["REPLICA", "GPU", "CPUS", "MEMORY", "GPU MEMORY", "PIDS"]);
    for i in &plan.instances {
        t.add_row([
            i.name.clone(),
            i.gpu.as_ref().map_or("-".into(), |g| g.index.to_string()),
            i.cpus
                .as_ref()
                .map_or("-".into(), |c| steward_host::cpulist::format(c)),
            size(i.memory),
            size(i.gpu_memory),
            i.pids_max.map_or("-".into(), |p| p.to_string()),
        ]);
    }
    let mut out = format!("{t}\n");
    let a = &plan.admission;
    if !a.memory.is_empty() {
        let mut m = Table::new();
        m.load_preset(presets::NOTHING);
        m.set_header(["MEMORY", "GiB", "GB"]);
        for line in &a.memory {
            m.add_row([
                line.what.clone(),
                ByteSize(line.bytes).binary(),
                ByteSize(line.bytes).decimal(),
            ]);
        }
        for col in 1..3 {
            if let Some(c) = m.column_mut(col) {
                c.set_cell_alignment(CellAlignment::Right);
            }
        }
        out.push_str(&format!("\n{m}\n"));
    }
    for w in &a.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    for r in &a.refusals {
        out.push_str(&format!("refused: {}: {}\n", r.key, r.message));
    }
    out.push_str(if a.admitted {
        "\nadmission: ok\n"
    } else {
        "\nadmission: REFUSED\n"
    });
    out
}
