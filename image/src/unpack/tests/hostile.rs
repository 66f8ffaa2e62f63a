//! Hostile layers. Each test unpacks into `top/dest` next to `top/outside`
//! and `top/victim`, and `hostile()` asserts that nothing outside `dest`
//! changed at all (content, mode, owner, link count, ctime, xattrs, no new
//! files). The tests then check what the layer did get inside `dest`.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::support::{Entry, Layer, ORIGINAL, assert_escape, hostile, lstat, root_or_skip, xattr};
use crate::unpack::UnpackError;

/// `dest` joined with an absolute host path (where IN_ROOT puts it).
fn inside(dest: &Path, abs: &[u8]) -> PathBuf {
    dest.join(
        Path::new(std::ffi::OsStr::from_bytes(abs))
            .strip_prefix("/")
            .expect("absolute"),
    )
}

fn assert_io_error(result: &Result<crate::unpack::UnpackStats, UnpackError>) {
    assert!(
        matches!(result, Err(UnpackError::Io { .. })),
        "expected Io error, got {result:?}"
    );
}

#[test]
fn dotdot_names_are_rejected() {
    if !root_or_skip("dotdot_names_are_rejected") {
        return;
    }
    for name in [
        "../outside/x",
        "../outside/file",
        "/../../outside/x",
        "a/../../outside/x",
        "./../victim",
        "..",
        "../",
    ] {
        let (_, result) = hostile(|_| Layer::new().add(Entry::file(name, b"pwned")));
        assert_escape(&result);
        // Every kind goes through the same check.
        let (_, result) = hostile(|_| Layer::new().add(Entry::dir(name).mode(0o777)));
        assert_escape(&result);
        let (_, result) = hostile(|_| Layer::new().add(Entry::symlink(name, "/")));
        assert_escape(&result);
    }
}

#[test]
fn absolute_names_land_inside_dest() {
    if !root_or_skip("absolute_names_land_inside_dest") {
        return;
    }
    let canary = format!("/etc/berth-unpack-canary-{}", std::process::id());
    let (sb, result) = hostile(|sb| {
        Layer::new()
            .add(Entry::file(sb.abs("outside/file"), b"pwned"))
            .add(Entry::file(sb.abs("victim"), b"pwned"))
            .add(Entry::file(&canary, b"pwned"))
            .add(Entry::dir(sb.abs("outside")).mode(0o777))
    });
    result.expect("absolute names are confined, not errors");
    assert_eq!(
        fs::read(inside(&sb.dest, &sb.abs("outside/file"))).unwrap(),
        b"pwned"
    );
    assert_eq!(
        fs::read(inside(&sb.dest, &sb.abs("victim"))).unwrap(),
        b"pwned"
    );
    assert_eq!(
        fs::read(inside(&sb.dest, canary.as_bytes())).unwrap(),
        b"pwned"
    );
    assert!(
        fs::symlink_metadata(&canary).is_err(),
        "{canary} created on the host"
    );
}

#[test]
fn symlinked_parent_relative() {
    if !root_or_skip("symlinked_parent_relative") {
        return;
    }
    // `a -> ../outside` resolves IN_ROOT to dest/outside.
    let (sb, result) = hostile(|_| {
        Layer::new()
            .add(Entry::dir("outside"))
            .add(Entry::symlink("a", "../outside"))
            .add(Entry::file("a/pwned", b"pwned"))
            .add(Entry::file("a/file", b"pwned").mode(0o777))
    });
    result.expect("confined");
    assert_eq!(fs::read(sb.dest.join("outside/pwned")).unwrap(), b"pwned");
    assert_eq!(fs::read(sb.dest.join("outside/file")).unwrap(), b"pwned");

    // Dangling (dest/outside does not exist): an error, nothing created.
    let (_, result) = hostile(|_| {
        Layer::new()
            .add(Entry::symlink("a", "../outside"))
            .add(Entry::file("a/pwned", b"pwned"))
    });
    assert_io_error(&result);
}

#[test]
fn symlinked_parent_absolute() {
    if !root_or_skip("symlinked_parent_absolute") {
        return;
    }
    let (sb, result) = hostile(|sb| {
        Layer::new()
            .add(Entry::dir(sb.abs("outside/sub")))
            .add(Entry::symlink("a", sb.abs("outside")))
            .add(Entry::file("a/file", b"pwned"))
            .add(Entry::file("a/sub/f2", b"pwned"))
            .add(Entry::dir("a/sub").mode(0o777))
    });
    result.expect("confined");
    let confined = inside(&sb.dest, &sb.abs("outside"));
    assert_eq!(fs::read(confined.join("file")).unwrap(), b"pwned");
    assert_eq!(fs::read(confined.join("sub/f2")).unwrap(), b"pwned");
    assert_eq!(lstat(confined.join("sub")).mode() & 0o7777, 0o777);
}

#[test]
fn symlink_to_root_then_dotdot() {
    if !root_or_skip("symlink_to_root_then_dotdot") {
        return;
    }
    // `a/../outside/x` normalizes to `outside/x`; `a/..` never reaches the
    // kernel, and if it did, IN_ROOT would clamp it at dest.
    let (sb, result) = hostile(|_| {
        Layer::new()
            .add(Entry::symlink("a", "/"))
            .add(Entry::file("a/../outside/x", b"pwned"))
            .add(Entry::file("a/victim", b"pwned"))
    });
    result.expect("confined");
    assert_eq!(fs::read(sb.dest.join("outside/x")).unwrap(), b"pwned");
    assert_eq!(fs::read(sb.dest.join("victim")).unwrap(), b"pwned");
}

#[test]
fn symlink_chains_stay_inside() {
    if !root_or_skip("symlink_chains_stay_inside") {
        return;
    }
    let (sb, result) = hostile(|sb| {
        Layer::new()
            .add(Entry::symlink("a", "b"))
            .add(Entry::symlink("b", "c/../../../.."))
            .add(Entry::dir("c"))
            .add(Entry::symlink("up", "../../../../../../../../.."))
            .add(Entry::symlink("abs", sb.abs("")))
            .add(Entry::symlink("hop", "abs/outside"))
            .add(Entry::dir(sb.abs("outside")))
            .add(Entry::dir("outside"))
            // a -> b -> (c/../../../..) = root
            .add(Entry::file("a/outside/file", b"pwned1"))
            .add(Entry::file("up/outside/x", b"pwned2"))
            .add(Entry::file("up/up/up/victim", b"pwned3"))
            .add(Entry::file("hop/file", b"pwned4"))
    });
    result.expect("confined");
    assert_eq!(fs::read(sb.dest.join("outside/file")).unwrap(), b"pwned1");
    assert_eq!(fs::read(sb.dest.join("outside/x")).unwrap(), b"pwned2");
    assert_eq!(fs::read(sb.dest.join("victim")).unwrap(), b"pwned3");
    assert_eq!(
        fs::read(inside(&sb.dest, &sb.abs("outside/file"))).unwrap(),
        b"pwned4"
    );
}

#[test]
fn symlink_loops_and_magic_links_fail_cleanly() {
    if !root_or_skip("symlink_loops_and_magic_links_fail_cleanly") {
        return;
    }
    let (_, result) = hostile(|_| {
        Layer::new()
            .add(Entry::symlink("l1", "l2"))
            .add(Entry::symlink("l2", "l1"))
            .add(Entry::file("l1/x", b"pwned"))
    });
    assert_io_error(&result);
    // /proc magic links do not exist inside the root (and are refused by
    // RESOLVE_NO_MAGICLINKS if a procfs ever were there).
    let (_, result) = hostile(|_| {
        Layer::new()
            .add(Entry::symlink("p", "/proc/self/root"))
            .add(Entry::file("p/tmp/x", b"pwned"))
    });
    assert_io_error(&result);
}

#[test]
fn hard_link_dotdot_is_rejected() {
    if !root_or_skip("hard_link_dotdot_is_rejected") {
        return;
    }
    for target in [
        "../outside/file",
        "/../outside/file",
        "x/../../outside/file",
    ] {
        let (sb, result) = hostile(|_| Layer::new().add(Entry::hardlink("h", target)));
        assert_escape(&result);
        assert_eq!(lstat(sb.outside.join("file")).nlink(), 1);
        assert!(fs::symlink_metadata(sb.dest.join("h")).is_err());
    }
}

#[test]
fn hard_link_absolute_target_is_confined() {
    if !root_or_skip("hard_link_absolute_target_is_confined") {
        return;
    }
    // The absolute target means dest/<abs>, which does not exist.
    let (sb, result) = hostile(|sb| Layer::new().add(Entry::hardlink("h", sb.abs("outside/file"))));
    assert_io_error(&result);
    assert_eq!(lstat(sb.outside.join("file")).nlink(), 1);

    // When it exists inside, that is what gets linked.
    let (sb, result) = hostile(|sb| {
        Layer::new()
            .add(Entry::file(sb.abs("outside/file"), b"inner"))
            .add(Entry::hardlink("h", sb.abs("outside/file")))
    });
    result.expect("confined");
    let inner = inside(&sb.dest, &sb.abs("outside/file"));
    assert_eq!(lstat(sb.dest.join("h")).ino(), lstat(inner).ino());
    assert_eq!(lstat(sb.outside.join("file")).nlink(), 1);
}

#[test]
fn hard_link_through_symlinked_parent() {
    if !root_or_skip("hard_link_through_symlinked_parent") {
        return;
    }
    for link_target in ["../outside", "/../../outside", "../../../../.."] {
        let (sb, result) = hostile(|_| {
            Layer::new()
                .add(Entry::symlink("a", link_target))
                .add(Entry::hardlink("h", "a/file"))
                .add(Entry::hardlink("h2", "a/outside/file"))
        });
        assert_io_error(&result);
        assert_eq!(lstat(sb.outside.join("file")).nlink(), 1, "{link_target}");
    }
    // The symlinked parent resolves inside dest: the inside file is linked.
    let (sb, result) = hostile(|_| {
        Layer::new()
            .add(Entry::file("real/file", b"inner"))
            .add(Entry::symlink("a", "../../../real"))
            .add(Entry::hardlink("h", "a/file"))
    });
    result.expect("confined");
    assert_eq!(
        lstat(sb.dest.join("h")).ino(),
        lstat(sb.dest.join("real/file")).ino()
    );
}

#[test]
fn hard_link_to_symlink_pointing_outside_links_the_symlink() {
    if !root_or_skip("hard_link_to_symlink_pointing_outside_links_the_symlink") {
        return;
    }
    let (sb, result) = hostile(|sb| {
        Layer::new()
            .add(Entry::symlink("s", sb.abs("outside/file")))
            .add(Entry::hardlink("h", "s"))
    });
    result.expect("links the symlink");
    let h = lstat(sb.dest.join("h"));
    assert!(h.file_type().is_symlink());
    assert_eq!(h.ino(), lstat(sb.dest.join("s")).ino());
    assert_eq!(lstat(sb.outside.join("file")).nlink(), 1);
}

#[test]
fn whiteout_dotdot_is_rejected() {
    if !root_or_skip("whiteout_dotdot_is_rejected") {
        return;
    }
    for name in [
        "../outside/.wh.file",
        "/../outside/.wh.file",
        "../.wh.victim",
        "../outside/.wh..wh..opq",
    ] {
        let (sb, result) = hostile(|_| Layer::new().add(Entry::whiteout(name)));
        assert_escape(&result);
        assert!(lstat(sb.outside.join("file")).is_file());
    }
}

#[test]
fn whiteout_through_symlinked_parent() {
    if !root_or_skip("whiteout_through_symlinked_parent") {
        return;
    }
    // Dangling inside dest: error, no device anywhere.
    let (_, result) = hostile(|_| {
        Layer::new()
            .add(Entry::symlink("a", "../outside"))
            .add(Entry::whiteout("a/.wh.file"))
    });
    assert_io_error(&result);

    // Resolving inside dest: the whiteout lands inside.
    let (sb, result) = hostile(|sb| {
        Layer::new()
            .add(Entry::dir(sb.abs("outside")))
            .add(Entry::symlink("a", sb.abs("outside")))
            .add(Entry::whiteout("a/.wh.file"))
            .add(Entry::whiteout("a/.wh..wh..opq"))
    });
    result.expect("confined");
    let confined = inside(&sb.dest, &sb.abs("outside"));
    let wh = lstat(confined.join("file"));
    assert!(wh.file_type().is_char_device());
    assert_eq!(
        xattr(&confined, b"trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(xattr(&sb.outside, b"trusted.overlay.opaque"), None);
}

#[test]
fn replacing_a_symlink_never_writes_through_it() {
    if !root_or_skip("replacing_a_symlink_never_writes_through_it") {
        return;
    }
    let (sb, result) = hostile(|sb| {
        Layer::new()
            .add(Entry::symlink("s", "../outside/file"))
            .add(Entry::file("s", b"pwned").mode(0o777).owner(1234, 1234))
            .add(Entry::symlink("t", sb.abs("outside/file")))
            .add(Entry::file("t", b"pwned").mode(0o4777))
            .add(Entry::symlink("u", sb.abs("victim")))
            .add(Entry::device("u", EntryType::Char, 1, 3))
            .add(Entry::symlink("v", sb.abs("victim")))
            .add(Entry::fifo("v").mode(0o777))
            .add(Entry::symlink("w", sb.abs("victim")))
            .add(Entry::whiteout(".wh.w"))
            .add(Entry::file("real", b"r"))
            .add(Entry::symlink("x", sb.abs("victim")))
            .add(Entry::hardlink("x", "real"))
    });
    result.expect("replaced");
    let d = &sb.dest;
    assert_eq!(fs::read(d.join("s")).unwrap(), b"pwned");
    assert_eq!(lstat(d.join("s")).uid(), 1234);
    assert_eq!(fs::read(d.join("t")).unwrap(), b"pwned");
    assert!(lstat(d.join("u")).file_type().is_char_device());
    assert!(lstat(d.join("v")).file_type().is_fifo());
    assert!(lstat(d.join("w")).file_type().is_char_device());
    assert_eq!(lstat(d.join("x")).ino(), lstat(d.join("real")).ino());
}

#[test]
fn directory_entry_on_a_symlink_replaces_it() {
    if !root_or_skip("directory_entry_on_a_symlink_replaces_it") {
        return;
    }
    let (sb, result) = hostile(|sb| {
        Layer::new()
            .add(Entry::symlink("d", sb.abs("outside")))
            .add(
                Entry::dir("d")
                    .mode(0o777)
                    .owner(1234, 1234)
                    .xattr("user.x", "1"),
            )
            .add(Entry::symlink("e", "../outside"))
            .add(Entry::dir("e/").mode(0o700))
    });
    result.expect("replaced");
    for name in ["d", "e"] {
        assert!(lstat(sb.dest.join(name)).is_dir(), "{name}");
    }
    assert_eq!(lstat(sb.dest.join("d")).mode() & 0o7777, 0o777);
}

#[test]
fn metadata_headers_on_symlinks_stay_on_the_symlink() {
    if !root_or_skip("metadata_headers_on_symlinks_stay_on_the_symlink") {
        return;
    }
    // A second header for the same symlink with other mode/owner/xattrs:
    // chown, xattrs and times apply to the link itself (no chmod on links).
    let (sb, result) = hostile(|sb| {
        Layer::new()
            .add(Entry::symlink("s", sb.abs("outside/file")))
            .add(
                Entry::symlink("s", sb.abs("outside/file"))
                    .mode(0o4777)
                    .owner(1234, 1234)
                    .mtime(5)
                    .xattr("trusted.x", "1"),
            )
            .add(Entry::symlink("r", "../outside/sub").owner(99, 99))
    });
    result.expect("unpack");
    let s = lstat(sb.dest.join("s"));
    assert!(s.file_type().is_symlink());
    assert_eq!((s.uid(), s.gid(), s.mtime()), (1234, 1234, 5));
    assert_eq!(
        xattr(&sb.dest.join("s"), b"trusted.x").as_deref(),
        Some(&b"1"[..])
    );
}

#[test]
fn deferred_directory_metadata_does_not_follow_moved_parents() {
    if !root_or_skip("deferred_directory_metadata_does_not_follow_moved_parents") {
        return;
    }
    // `l/sub` is recorded through `l -> m`; then `m` becomes a symlink to
    // the outside. At the end `l/sub` resolves (IN_ROOT) to a different
    // place or nothing: its recorded mode must not land anywhere else.
    let (sb, result) = hostile(|sb| {
        Layer::new()
            .add(Entry::dir("m"))
            .add(Entry::symlink("l", "m"))
            .add(Entry::dir("l/sub").mode(0o777))
            .add(Entry::symlink("m", sb.abs("outside")))
            .add(Entry::dir(sb.abs("outside/sub")).mode(0o700))
    });
    result.expect("unpack");
    let confined = inside(&sb.dest, &sb.abs("outside/sub"));
    assert_eq!(lstat(confined).mode() & 0o7777, 0o700);
}

#[test]
fn entries_replacing_the_root_are_rejected() {
    if !root_or_skip("entries_replacing_the_root_are_rejected") {
        return;
    }
    for entry in [
        Entry::file(".", b"x"),
        Entry::file("", b"x"),
        Entry::symlink("/", "/etc"),
        Entry::symlink("./", "../outside"),
        Entry::hardlink("a/..", "f"),
        Entry::fifo("."),
        Entry::device("/", EntryType::Block, 8, 0),
    ] {
        let (_, result) = hostile(|_| Layer::new().add(Entry::file("f", b"x")).add(entry.clone()));
        assert_escape(&result);
    }
    // Hard links to the root.
    let (_, result) = hostile(|_| Layer::new().add(Entry::hardlink("h", "/")));
    assert_escape(&result);
    let (_, result) = hostile(|_| Layer::new().add(Entry::hardlink("h", "a/..")));
    assert_escape(&result);
}

#[test]
fn dest_mode_and_owner_survive_root_entries() {
    if !root_or_skip("dest_mode_and_owner_survive_root_entries") {
        return;
    }
    // `hostile` also compares dest's own mode, owner, inode and xattrs.
    let (_, result) = hostile(|_| {
        Layer::new()
            .add(
                Entry::dir(".")
                    .mode(0o777)
                    .owner(1234, 1234)
                    .xattr("trusted.x", "1"),
            )
            .add(Entry::dir("/").mode(0o700))
            .add(Entry::dir("a/..").mode(0o700))
    });
    result.expect("ignored");
}

#[test]
fn huge_whiteout_and_nul_names_are_refused() {
    if !root_or_skip("huge_whiteout_and_nul_names_are_refused") {
        return;
    }
    let (_, result) =
        hostile(|_| Layer::new().add(Entry::file("a", b"").pax("path", b"ok/../../outside\0/x")));
    assert!(
        matches!(result, Err(UnpackError::Invalid { .. })),
        "{result:?}"
    );
    let (_, result) =
        hostile(|_| Layer::new().add(Entry::symlink("s", "").pax("linkpath", b"/etc\0")));
    assert!(
        matches!(result, Err(UnpackError::Invalid { .. })),
        "{result:?}"
    );
    let (_, result) =
        hostile(|_| Layer::new().add(Entry::hardlink("h", "x").pax("linkpath", b"../\0")));
    assert!(
        matches!(result, Err(UnpackError::Invalid { .. })),
        "{result:?}"
    );
    // Original content is still intact (checked by `hostile` too).
    let _ = ORIGINAL;
}
