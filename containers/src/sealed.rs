//! berthd's sealed copies of the OCI runtime binaries (the defence against
//! the CVE-2019-5736 class, explained in `berth_process::sealed`): a
//! runtime runs its own code inside a container's namespaces, so it never
//! runs from its host file. One copy per binary, made on its first use and
//! shared by every call berthd makes and by every shim it starts (a shim
//! receives its pod's copy at start and runs the runtime from it).
//!
//! berth-runtime's copy is sealed strictly (also `F_SEAL_EXEC`); other
//! runtimes' with exactly the four seals runc recognises, so runc runs from
//! it instead of copying itself per call. A copy reflects the binary when
//! berthd first used it: replacing a runtime takes effect at berthd's next
//! start, and for a pod at its shim's (its first container after that).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_process::sealed::SealedExe;
use berth_shim::proto;

use crate::error::RuntimeError;

/// The built-in handler's binary (a handler with an empty path).
pub const BUILTIN_RUNTIME: &str = "berth-runtime";

#[derive(Debug, Default)]
pub struct SealedRuntimes {
    copies: Mutex<HashMap<PathBuf, Arc<SealedExe>>>,
    /// Each runtime's `features`, asked once.
    features: Mutex<HashMap<PathBuf, Option<serde_json::Value>>>,
}

impl SealedRuntimes {
    /// The copy of the runtime at `path`, made now if it is the first use.
    pub fn get(&self, path: &Path) -> Result<Arc<SealedExe>, RuntimeError> {
        let mut copies = self.copies.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = copies.get(path) {
            return Ok(Arc::clone(c));
        }
        let strict = path.file_name().is_some_and(|n| n == BUILTIN_RUNTIME);
        let copy = if strict {
            SealedExe::seal(path)
        } else {
            SealedExe::seal_exact(path)
        }
        .map_err(|e| RuntimeError::io(format!("making a sealed copy of {}", path.display()), e))?;
        let copy = Arc::new(copy);
        copies.insert(path.to_owned(), Arc::clone(&copy));
        tracing::debug!(runtime = %path.display(), "sealed copy made");
        Ok(copy)
    }

    /// The runtime's `features` document (its JSON), asked once per binary
    /// and kept; None when it cannot tell.
    pub fn features(&self, rt: &proto::Runtime) -> Option<serde_json::Value> {
        let mut cache = self.features.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = cache.get(&rt.path) {
            return f.clone();
        }
        let f = self.get(&rt.path).ok().and_then(|copy| {
            use std::os::unix::process::CommandExt;
            let out = std::process::Command::new(copy.exec_path())
                .arg0(&rt.path)
                .arg("features")
                .env_clear()
                .env("PATH", crate::shim::SAFE_PATH)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| serde_json::from_slice(&out.stdout).ok())
                .flatten()
        });
        cache.insert(rt.path.clone(), f.clone());
        f
    }

    /// The runtime's command, run from its copy (`argv[0]` names the file),
    /// with its global options, a clean environment and no stdin.
    pub fn command(&self, rt: &proto::Runtime) -> Result<tokio::process::Command, RuntimeError> {
        let copy = self.get(&rt.path)?;
        let mut c = tokio::process::Command::new(copy.exec_path());
        // The cache keeps the copy, and so the descriptor its path names,
        // open for good.
        c.arg0(&rt.path);
        if let Some(root) = &rt.root {
            c.arg("--root").arg(root);
        }
        if rt.systemd_cgroup {
            c.arg("--systemd-cgroup");
        }
        c.args(&rt.options);
        c.env_clear().env("PATH", crate::shim::SAFE_PATH);
        c.stdin(std::process::Stdio::null());
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_binary() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("runc");
        let b = dir.path().join(BUILTIN_RUNTIME);
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        let s = SealedRuntimes::default();
        let a1 = s.get(&a).unwrap();
        assert!(Arc::ptr_eq(&a1, &s.get(&a).unwrap()));
        assert!(!Arc::ptr_eq(&a1, &s.get(&b).unwrap()));
        assert!(berth_process::sealed::is_sealed(&*a1));
        assert!(s.get(&dir.path().join("missing")).is_err());
    }
}
