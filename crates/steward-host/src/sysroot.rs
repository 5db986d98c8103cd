use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {what}", path.display())]
    Parse { path: PathBuf, what: String },
}

/// The root every host file is read under: `/` on a live host, a fixture folder in tests.
#[derive(Debug, Clone)]
pub struct Sysroot {
    root: PathBuf,
}

impl Default for Sysroot {
    fn default() -> Self {
        Sysroot::live()
    }
}

impl Sysroot {
    pub fn live() -> Self {
        Sysroot { root: "/".into() }
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        Sysroot { root: root.into() }
    }

    /// The host path `abs` (written as on a live host, e.g. `/proc/meminfo`) under this root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    pub fn read(&self, abs: &str) -> Result<String, HostError> {
        let path = self.path(abs);
        std::fs::read_to_string(&path).map_err(|source| HostError::Read { path, source })
    }

    /// Whether this is the live host (`/`), where effects such as NVML calls make sense.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}
