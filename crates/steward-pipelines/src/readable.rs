//! Whether a job's input can be read on this node. With a shared queue the input must be on
//! storage every node sees; a node that cannot open it fails that attempt (so that another
//! node, or a later attempt, can take it) and says which node it was. It is never skipped.

use std::path::Path;

/// Why `input` cannot be read here, naming the node of the lease `owner`
/// (`<node>/<run>/<slot>`), or `None` when it opens.
pub fn unreadable_here(input: &Path, owner: &str) -> Option<String> {
    let err = std::fs::File::open(input).err()?;
    let node = owner.split('/').next().unwrap_or(owner);
    Some(format!(
        "input unreadable on {node}: {}: {err}; with a shared queue, inputs must be on storage every node can read",
        steward_config::escaped_os(input.as_os_str())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_input_names_the_node_and_the_file() {
        let why = unreadable_here(Path::new("/nonexistent/in.pdf"), "gpu-3/r1/0").unwrap();
        assert!(
            why.starts_with("input unreadable on gpu-3: /nonexistent/in.pdf: "),
            "{why}"
        );
    }

    #[test]
    fn a_readable_input_is_none() {
        let f = std::env::temp_dir().join(format!("steward-readable-{}", std::process::id()));
        std::fs::write(&f, b"x").unwrap();
        assert_eq!(unreadable_here(&f, "n/r/0"), None);
        std::fs::remove_file(&f).unwrap();
    }
}
