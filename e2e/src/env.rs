//! The test environment: root, binaries, scratch directories.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether this test may run. Not root: in CI a failure, elsewhere a skip
/// that says so on stderr.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!ci, "{test} needs root, and CI=true forbids skipping it");
    eprintln!("SKIPPED {test}: needs root (run the tests as root)");
    false
}

/// A built workspace binary (`berthd`, `berth`, ...): `$BERTH_BIN_DIR`, else
/// the cargo target dir this test binary lives in.
pub fn bin_path(name: &str) -> PathBuf {
    let dir = match std::env::var_os("BERTH_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            // target/<profile>/deps/<test-binary>, or target/<profile>/<binary>
            let exe = std::env::current_exe().expect("current_exe");
            let dir = exe.parent().expect("binary in a directory");
            if dir.ends_with("deps") {
                dir.parent().expect("deps in a profile dir").to_owned()
            } else {
                dir.to_owned()
            }
        }
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --workspace` (cargo nextest run --workspace builds it), or set BERTH_BIN_DIR",
        path.display()
    );
    path
}

/// A fresh, unique scratch directory for one test: `/tmp/berth-e2e/<tag>-<pid>-<n>`.
/// Short on purpose: unix socket paths must stay under 108 bytes.
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

/// Every cgroup hierarchy's mount: /sys/fs/cgroup itself (cgroup v2, or
/// the tmpfs of a v1 host) and each directory in it.
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let mut all = vec![root.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(root) {
        all.extend(rd.flatten().map(|e| e.path()));
    }
    all
}

/// Mount points at or under `dir`, from /proc/self/mountinfo, deepest first.
pub fn mounts_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let info = berth_mountinfo::read_own();
    let mut found: Vec<PathBuf> = berth_mountinfo::parse(&info)
        .map(|e| PathBuf::from(e.mount_point))
        .filter(|m| m.starts_with(dir))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    found
}
