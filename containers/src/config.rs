//! `[runtime]`: OCI runtime handlers (kubelet's RuntimeClass handlers),
//! the shim binary, exec limits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One RuntimeClass handler: an OCI runtime with runc's command line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Handler {
    /// The runtime binary: a path, or a name looked up next to berthd and
    /// then in $PATH. Empty: `berth-runtime`.
    pub path: String,
    /// Its state directory (`--root`). Empty: `<state_dir>/runtime/<handler>`.
    pub root: String,
    /// Extra global options, placed before the command.
    pub options: Vec<String>,
}

/// The default pids limit of a container: far above what ordinary
/// containers run (threads count), far below the kernel's default pid_max
/// of 32768.
pub const DEFAULT_PIDS_LIMIT: i64 = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Handler for pods whose RunPodSandbox names none.
    pub default_handler: String,
    /// The berth-shim binary; empty: next to berthd, then $PATH.
    pub shim_path: String,
    /// ExecSync keeps at most this many bytes of stdout and of stderr.
    pub exec_max_output: u64,
    /// Resource limits of every container process, `NAME=SOFT:HARD` or
    /// `NAME=VALUE` (see `berth_spec::rlimits`); empty: none set.
    pub default_rlimits: Vec<String>,
    /// The pids limit (`pids.max`) of a container's cgroup, as CRI-O's
    /// `pids_limit`: the CRI sets none per container, so without it a
    /// fork bomb in a pod kubelet gave no pod-level limit exhausts the
    /// node's pids. 0: none.
    pub default_pids_limit: i64,
    pub handlers: BTreeMap<String, Handler>,
}

impl Default for Config {
    fn default() -> Self {
        let mut handlers = BTreeMap::new();
        handlers.insert("berth".to_owned(), Handler::default());
        handlers.insert(
            "runc".to_owned(),
            Handler {
                path: "runc".into(),
                ..Handler::default()
            },
        );
        Config {
            default_handler: "berth".into(),
            shim_path: String::new(),
            exec_max_output: 16 * 1024 * 1024,
            default_rlimits: Vec::new(),
            default_pids_limit: DEFAULT_PIDS_LIMIT,
            handlers,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.handlers.contains_key(&self.default_handler) {
            return Err((
                "default_handler",
                format!(
                    "{:?} is not one of the configured handlers ({})",
                    self.default_handler,
                    self.handlers.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        if self.default_pids_limit < 0 {
            return Err((
                "default_pids_limit",
                "must be 0 (no limit) or a number of processes".into(),
            ));
        }
        if self.exec_max_output == 0 {
            return Err(("exec_max_output", "must be at least 1".into()));
        }
        berth_spec::rlimits::parse_rlimits(&self.default_rlimits)
            .map_err(|e| ("default_rlimits", e))?;
        Ok(())
    }

    /// The handler a pod's `runtime_handler` names ("" = the default).
    pub fn handler(&self, name: &str) -> Option<(&str, &Handler)> {
        let name = if name.is_empty() {
            self.default_handler.as_str()
        } else {
            name
        };
        self.handlers
            .get_key_value(name)
            .map(|(k, h)| (k.as_str(), h))
    }
}

/// Finds a helper binary: an absolute or relative path as given, else the
/// name next to the running executable, else in $PATH.
pub fn find_binary(name_or_path: &str) -> Option<PathBuf> {
    if name_or_path.contains('/') {
        let p = PathBuf::from(name_or_path);
        return p.is_file().then_some(p);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let p = dir.join(name_or_path);
        if p.is_file() {
            return Some(p);
        }
        // Test binaries live one level below the workspace's bins.
        if let Some(p) = dir.parent().map(|d| d.join(name_or_path))
            && p.is_file()
        {
            return Some(p);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name_or_path))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_handler_must_exist() {
        let mut c = Config::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.handler("").unwrap().0, "berth");
        assert_eq!(c.handler("runc").unwrap().1.path, "runc");
        assert!(c.handler("kata").is_none());
        c.default_handler = "kata".into();
        let (key, msg) = c.validate().unwrap_err();
        assert_eq!(key, "default_handler");
        assert!(msg.contains("berth, runc"), "{msg}");
    }

    #[test]
    fn default_rlimits_are_checked_at_load() {
        let mut c = Config {
            default_rlimits: vec!["nofile=1024:4096".into(), "core=0".into()],
            ..Config::default()
        };
        assert!(c.validate().is_ok());
        c.default_rlimits.push("nofiles=1".into());
        let (key, msg) = c.validate().unwrap_err();
        assert_eq!(key, "default_rlimits");
        assert!(msg.contains("unknown limit"), "{msg}");
    }

    #[test]
    fn binaries_are_found_by_path_or_name() {
        assert_eq!(find_binary("/bin/sh"), Some(PathBuf::from("/bin/sh")));
        assert_eq!(find_binary("/nonexistent/x"), None);
        assert!(find_binary("sh").is_some());
        assert_eq!(find_binary("berth-no-such-binary"), None);
    }
}
