//! The test environment: root, binaries, scratch directories.

use std::path::PathBuf;

pub use berth_testkit::{root_or_skip, scratch_dir};

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
