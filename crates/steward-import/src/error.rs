//! Why an import failed: the file, where in it (line, column and the YAML path), and what
//! to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{col}: not YAML: {message}", path.display())]
    NotYaml {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{}: not a compose file: {why}", path.display())]
    NotCompose { path: PathBuf, why: String },
    /// Something at one place of a file: `yaml_path` such as `services.api.depends_on`.
    #[error("{}:{line}:{col}: {yaml_path}: {message}", path.display())]
    At {
        path: PathBuf,
        line: usize,
        col: usize,
        yaml_path: String,
        message: String,
    },
    #[error(
        "no compose file given and none found here ({tried}); name one: steward import compose.yml"
    )]
    NoFile { tried: String },
    #[error("--strict: {count} thing(s) cannot be taken over (listed above as \"cannot map\")")]
    Strict { count: usize },
}
