use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[cni]`: where network configuration and plugins live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory of network configuration files (`.conflist`, `.conf`,
    /// `.json`); the first valid one in lexical order is the pod network.
    /// Read again on every use, so a config written after start is picked
    /// up without a restart.
    pub conf_dir: PathBuf,
    /// Directories searched, in order, for plugin binaries.
    pub bin_dirs: Vec<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
        }
    }
}

impl Config {
    /// Checks values serde cannot: returns (key, problem).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.conf_dir.is_absolute() {
            return Err((
                "conf_dir",
                format!("{:?} is not an absolute path", self.conf_dir),
            ));
        }
        if self.bin_dirs.is_empty() {
            return Err(("bin_dirs", "must name at least one directory".into()));
        }
        if let Some(d) = self.bin_dirs.iter().find(|d| !d.is_absolute()) {
            return Err(("bin_dirs", format!("{d:?} is not an absolute path")));
        }
        Ok(())
    }
}
