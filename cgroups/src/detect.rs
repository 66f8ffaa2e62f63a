//! Which cgroup hierarchy the node runs.

use std::path::Path;

use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, TMPFS_MAGIC, statfs};

/// The layout of `/sys/fs/cgroup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v2 only (`/sys/fs/cgroup` is cgroup2).
    Unified,
    /// cgroup v1 controllers, with a cgroup2 mount at `unified/` that holds
    /// no (or few) controllers: berth uses v1 for limits.
    Hybrid,
    /// cgroup v1 only.
    Legacy,
}

impl Hierarchy {
    pub fn as_str(self) -> &'static str {
        match self {
            Hierarchy::Unified => "v2",
            Hierarchy::Hybrid => "v1 (hybrid)",
            Hierarchy::Legacy => "v1",
        }
    }
}

/// Detects the hierarchy mounted at `root` (normally `/sys/fs/cgroup`).
pub fn detect(root: &Path) -> Result<Hierarchy, String> {
    let fs = statfs(root).map_err(|e| format!("statfs {}: {e}", root.display()))?;
    let kind = fs.filesystem_type();
    if kind == CGROUP2_SUPER_MAGIC {
        return Ok(Hierarchy::Unified);
    }
    if kind != TMPFS_MAGIC {
        return Err(format!(
            "{} is neither a cgroup2 mount nor a tmpfs of v1 controllers",
            root.display()
        ));
    }
    let unified = root.join("unified");
    match statfs(&unified) {
        Ok(u) if u.filesystem_type() == CGROUP2_SUPER_MAGIC => Ok(Hierarchy::Hybrid),
        _ => Ok(Hierarchy::Legacy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_directory_is_not_a_cgroup_root() {
        let err = detect(Path::new("/proc")).unwrap_err();
        assert!(err.contains("neither a cgroup2 mount"), "{err}");
    }

    #[test]
    fn this_node_has_a_cgroup_hierarchy() {
        // Every Linux node berth runs on mounts cgroups; which one is the
        // machine's business, but detection must not fail.
        detect(Path::new("/sys/fs/cgroup")).unwrap();
    }
}
