//! What berth's tests share, defined once:
//!
//! - [`root_or_skip`] / [`require`]: the guard of a test that needs root
//!   (or another thing of the machine). One behaviour everywhere: the test
//!   runs when it can; otherwise under CI (`CI=true` or `CI=1`) it fails,
//!   never skipping silently, and elsewhere it prints why it is skipped.
//! - [`scratch_dir`]: a fresh, short, unique directory per test (unix
//!   socket paths under it must stay below 108 bytes).
//! - [`busybox_rootfs`]: a container root made of Debian's busybox-static.
//! - [`modules::module_cycles`]: the module cycles of a crate (project
//!   policy: none).
//!
//! The end-to-end harness (berth-e2e) builds on these with daemons,
//! registries and images.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod modules;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Debian's busybox-static: the one binary test rootfs are made of.
pub const BUSYBOX: &str = "/bin/busybox";

/// Whether `test`, which needs root, may run (see the crate doc).
pub fn root_or_skip(test: &str) -> bool {
    require(test, rustix::process::geteuid().is_root(), "needs root")
}

/// Whether `test` may run when `ok` says whether what it needs is there
/// (`why` names it): true when `ok`; otherwise a failure under CI, else a
/// skip line on stderr and false.
pub fn require(test: &str, ok: bool, why: &str) -> bool {
    if ok {
        return true;
    }
    assert!(
        !in_ci(),
        "{test} {why}, and CI forbids skipping it (run the tests as root on a prepared machine: scripts/test)"
    );
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// Whether this is a CI run (`CI=true` or `CI=1`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A fresh, unique scratch directory for one test:
/// `/tmp/berth-e2e/<tag>-<pid>-<n>` (tag cut to 24 characters). Short on
/// purpose: unix socket paths must stay under 108 bytes.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let tag: String = tag.chars().take(24).collect();
    let dir = PathBuf::from("/tmp/berth-e2e").join(format!("{tag}-{}-{n}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("clearing an old scratch dir");
    }
    std::fs::create_dir_all(&dir).expect("creating scratch dir");
    dir
}

/// A container root at `rootfs`: the directories a runtime mounts on
/// (`bin proc dev sys tmp etc`), `bin/busybox` copied from [`BUSYBOX`], and
/// one symlink per applet in `applets`.
pub fn busybox_rootfs(rootfs: &Path, applets: &[&str]) {
    for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
    add_applets(rootfs, applets);
}

/// More applet symlinks in a [`busybox_rootfs`].
pub fn add_applets(rootfs: &Path, applets: &[&str]) {
    for a in applets {
        let link = rootfs.join("bin").join(a);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link).unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_met_requirement_runs() {
        assert!(require("t", true, "needs nothing"));
    }

    #[test]
    fn scratch_dirs_are_unique_and_short() {
        let a = scratch_dir("a-rather-long-tag-that-gets-cut-here");
        let b = scratch_dir("a-rather-long-tag-that-gets-cut-here");
        assert_ne!(a, b);
        assert!(a.as_os_str().len() < 60, "{}", a.display());
        std::fs::remove_dir_all(a).unwrap();
        std::fs::remove_dir_all(b).unwrap();
    }
}
