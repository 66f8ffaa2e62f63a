//! `berth_image::unpack::unpack_layer` on arbitrary (already decompressed)
//! tar bytes, into a fresh directory each run.
//!
//! Layout, under a base directory (`/tmp/berth-fuzz-unpack`, or
//! `/tmp/berth-fuzz-unpack-<pid>` when another process holds that one):
//!
//! ```text
//! base/canary/file    "canary\n", 0644: must never change
//! base/dest/          the unpack destination, new for every input
//! ```
//!
//! Asserted for every input, whether the unpack succeeds or fails:
//! - no panic;
//! - `base` holds exactly `canary` and `dest` (nothing was created beside
//!   `dest`, e.g. by `../x` names or through symlinks);
//! - `canary` holds exactly `file`, and `canary`'s and `file`'s mode,
//!   owner, size, link count, mtime and content are unchanged (nothing was
//!   written, chmodded, chowned, hard-linked or replaced through a symlink
//!   or hard link pointing there; the seeds name it both as
//!   `../canary/file` and by its absolute path);
//! - on success, `dest` is still a real directory (not replaced by a
//!   symlink) and the stats count no more entries than the archive could
//!   hold (one 512-byte header each).
//!
//! Ownership is preserved (chown exercised) only when running as root;
//! otherwise `preserve_ownership(false)`, so no privilege is needed.
#![no_main]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth_image::unpack::{UnpackOptions, unpack_layer};
use libfuzzer_sys::fuzz_target;

const CANARY: &[u8] = b"canary\n";

struct Env {
    base: PathBuf,
    opts: UnpackOptions,
    canary_dir: Snapshot,
    canary_file: Snapshot,
}

#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    nlink: u64,
    mtime: (i64, i64),
    ino: u64,
    file_type: String,
}

fn snapshot(p: &Path) -> Snapshot {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("canary {} gone: {e}", p.display()));
    Snapshot {
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        size: m.size(),
        nlink: m.nlink(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ino: m.ino(),
        file_type: format!("{:?}", m.file_type()),
    }
}

/// Makes everything under `p` removable (an unprivileged run cannot
/// descend into 0000 directories), then removes it.
fn remove_tree(p: &Path) {
    fn open_up(p: &Path) {
        let Ok(m) = fs::symlink_metadata(p) else {
            return;
        };
        if !m.is_dir() {
            return;
        }
        let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
        if let Ok(rd) = fs::read_dir(p) {
            for e in rd.flatten() {
                open_up(&e.path());
            }
        }
    }
    if fs::remove_dir_all(p).is_err() {
        open_up(p);
        fs::remove_dir_all(p).unwrap_or_else(|e| panic!("cannot clean {}: {e}", p.display()));
    }
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let fixed = PathBuf::from("/tmp/berth-fuzz-unpack");
        // One process per base: take the fixed one if it is free (its
        // pid file names a dead process or nobody), else a private one.
        let pid = std::process::id();
        let owner_alive = |b: &Path| {
            fs::read_to_string(b.join("owner"))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .is_some_and(|p| p != pid && Path::new(&format!("/proc/{p}")).exists())
        };
        let base = if owner_alive(&fixed) {
            PathBuf::from(format!("/tmp/berth-fuzz-unpack-{pid}"))
        } else {
            fixed
        };
        if base.exists() {
            remove_tree(&base);
        }
        fs::create_dir_all(base.join("canary")).expect("base dir");
        fs::write(base.join("owner"), pid.to_string()).expect("owner file");
        let file = base.join("canary/file");
        fs::write(&file, CANARY).expect("canary file");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod canary");
        let root = is_root();
        Env {
            canary_dir: snapshot(&base.join("canary")),
            canary_file: snapshot(&file),
            base,
            opts: UnpackOptions::default().preserve_ownership(root),
        }
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn check_canary(env: &Env, data_len: usize) {
    let mut names: Vec<String> = fs::read_dir(&env.base)
        .expect("read base")
        .map(|e| {
            e.expect("base entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["canary", "dest", "owner"],
        "something was created beside dest (input of {data_len} bytes)"
    );
    let canary = env.base.join("canary");
    let inside: Vec<String> = fs::read_dir(&canary)
        .expect("read canary")
        .map(|e| {
            e.expect("canary entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(inside, ["file"], "something was created in the canary dir");
    assert_eq!(snapshot(&canary), env.canary_dir, "canary dir changed");
    let file = canary.join("file");
    assert_eq!(
        snapshot(&file),
        env.canary_file,
        "canary file metadata changed"
    );
    assert_eq!(
        fs::read(&file).expect("read canary file"),
        CANARY,
        "canary file content changed"
    );
}

fuzz_target!(|data: &[u8]| {
    let env = env();
    let dest = env.base.join("dest");
    fs::create_dir(&dest).expect("create dest");
    let result = unpack_layer(data, &dest, &env.opts);
    check_canary(env, data.len());
    if let Ok(stats) = &result {
        let m = fs::symlink_metadata(&dest).expect("dest still there");
        assert!(
            m.is_dir() && !m.file_type().is_symlink(),
            "dest replaced: {m:?}"
        );
        let max_entries = (data.len() / 512) as u64;
        assert!(
            stats.entries <= max_entries,
            "{} entries from {} bytes",
            stats.entries,
            data.len()
        );
    }
    remove_tree(&dest);
});
