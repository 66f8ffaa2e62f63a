//! The overlay form is what overlayfs expects: two unpacked layers mounted
//! as lower dirs show the merged image.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use super::support::{Entry, Layer, root_or_skip, unpack};

/// Unmounts on drop, so a failed assertion leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

fn mount_overlay(lowers: &[&Path], target: &Path) -> Option<Mounted> {
    let lowerdir: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    let data = format!("lowerdir={}", lowerdir.join(":"));
    match nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::MS_RDONLY,
        Some(data.as_str()),
    ) {
        Ok(()) => Some(Mounted(target.to_owned())),
        Err(e) => {
            berth_testkit::require(
                "overlay check",
                false,
                &format!("cannot mount overlayfs here: {e}"),
            );
            None
        }
    }
}

#[test]
fn overlayfs_honours_whiteouts_and_opaque_dirs() {
    if !root_or_skip("overlayfs_honours_whiteouts_and_opaque_dirs") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (l1, l2, mnt) = (
        tmp.path().join("l1"),
        tmp.path().join("l2"),
        tmp.path().join("mnt"),
    );
    for d in [&l1, &l2, &mnt] {
        fs::create_dir(d).expect("mkdir");
    }
    let base = Layer::new()
        .add(Entry::file("gone", b"1"))
        .add(Entry::file("dir/old", b"1"))
        .add(Entry::file("dir2/stay", b"1"))
        .add(Entry::file("forged/hidden", b"1"));
    unpack(&base.bytes(), &l1).expect("unpack base");
    let top = Layer::new()
        .add(Entry::whiteout(".wh.gone"))
        .add(Entry::dir("dir"))
        .add(Entry::whiteout("dir/.wh..wh..opq"))
        .add(Entry::file("dir/new", b"2"))
        .add(Entry::file("dir2/added", b"2"))
        // An image cannot make a directory opaque by forging the xattr.
        .add(Entry::dir("forged").xattr("trusted.overlay.opaque", "y"));
    unpack(&top.bytes(), &l2).expect("unpack top");

    let Some(_mounted) = mount_overlay(&[&l2, &l1], &mnt) else {
        return;
    };
    assert!(
        fs::symlink_metadata(mnt.join("gone")).is_err(),
        "whiteout hides gone"
    );
    assert!(
        fs::symlink_metadata(mnt.join("dir/old")).is_err(),
        "opaque dir hides old"
    );
    assert_eq!(fs::read(mnt.join("dir/new")).unwrap(), b"2");
    assert_eq!(fs::read(mnt.join("dir2/stay")).unwrap(), b"1");
    assert_eq!(fs::read(mnt.join("dir2/added")).unwrap(), b"2");
    assert_eq!(
        fs::read(mnt.join("forged/hidden")).unwrap(),
        b"1",
        "forged opaque xattr dropped"
    );
}
