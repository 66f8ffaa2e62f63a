//! Disk use of a directory tree (a container's writable layer): bytes
//! allocated, as `du` counts them, and inodes. A walk of the whole tree,
//! so the collector does it on its tick, never per call.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes allocated and inodes used under a directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    pub bytes: u64,
    pub inodes: u64,
}

/// Walks `dir` without following symlinks or leaving its filesystem;
/// entries that vanish meanwhile are skipped. None when `dir` is gone.
pub fn usage(dir: &Path) -> Option<DiskUsage> {
    let top = std::fs::symlink_metadata(dir).ok()?;
    let mut u = DiskUsage::default();
    let mut stack = vec![dir.to_owned()];
    add(&mut u, &top);
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            add(&mut u, &m);
            if m.is_dir() && m.dev() == top.dev() {
                stack.push(e.path());
            }
        }
    }
    Some(u)
}

fn add(u: &mut DiskUsage, m: &std::fs::Metadata) {
    u.bytes += m.blocks() * 512;
    u.inodes += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_directories_are_counted() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/b/f"), vec![7u8; 100_000]).unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("link")).unwrap();
        let u = usage(d.path()).unwrap();
        // The top, a, b, f and the link.
        assert_eq!(u.inodes, 5);
        assert!(u.bytes >= 100_000, "{u:?}");
        assert!(usage(&d.path().join("gone")).is_none());
    }
}
