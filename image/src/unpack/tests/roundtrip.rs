//! Every supported entry kind comes out as the layer says.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use tar::EntryType;

use super::support::{Entry, Layer, Sandbox, lstat, root_or_skip, unpack, xattr};
use crate::unpack::{UnpackError, UnpackOptions, unpack_layer};

fn perm(md: &fs::Metadata) -> u32 {
    md.mode() & 0o7777
}

#[test]
fn regular_files_keep_content_mode_owner_and_mtime() {
    if !root_or_skip("regular_files_keep_content_mode_owner_and_mtime") {
        return;
    }
    let sb = Sandbox::new();
    let layer = Layer::new()
        .add(
            Entry::dir("usr/")
                .mode(0o750)
                .owner(12, 34)
                .mtime(1_500_000_000),
        )
        .add(Entry::dir("usr/bin/"))
        .add(
            Entry::file("usr/bin/su", b"#!setuid\n")
                .mode(0o4755)
                .owner(0, 0)
                .mtime(1_600_000_000),
        )
        .add(
            Entry::file("usr/bin/wall", b"sgid")
                .mode(0o2711)
                .owner(1000, 5),
        )
        .add(
            Entry::file("usr/bin/odd", b"")
                .mode(0o1000)
                .owner(65534, 65534),
        )
        .add(
            Entry::file("./usr/share/doc", b"doc")
                .mode(0o600)
                .owner(1000, 2000)
                .mtime(7),
        );
    let stats = unpack(&layer.bytes(), &sb.dest).expect("unpack");
    assert_eq!(stats.entries, 6);
    assert_eq!(stats.files, 4);
    assert_eq!(stats.dirs, 2);
    assert_eq!(stats.bytes, 9 + 4 + 3);

    let su = lstat(sb.dest.join("usr/bin/su"));
    assert!(su.is_file());
    assert_eq!(fs::read(sb.dest.join("usr/bin/su")).unwrap(), b"#!setuid\n");
    assert_eq!(perm(&su), 0o4755, "setuid survives chown");
    assert_eq!(su.mtime(), 1_600_000_000);

    let wall = lstat(sb.dest.join("usr/bin/wall"));
    assert_eq!(
        (perm(&wall), wall.uid(), wall.gid()),
        (0o2711, 1000, 5),
        "setgid after chown"
    );
    let odd = lstat(sb.dest.join("usr/bin/odd"));
    assert_eq!((perm(&odd), odd.uid(), odd.gid()), (0o1000, 65534, 65534));

    let doc = lstat(sb.dest.join("usr/share/doc"));
    assert_eq!(
        (perm(&doc), doc.uid(), doc.gid(), doc.mtime()),
        (0o600, 1000, 2000, 7)
    );

    // Directory metadata is applied after its contents are written.
    let usr = lstat(sb.dest.join("usr"));
    assert_eq!((perm(&usr), usr.uid(), usr.gid()), (0o750, 12, 34));
    assert_eq!(usr.mtime(), 1_500_000_000);
    // Implicit parent: 0755 root.
    let share = lstat(sb.dest.join("usr/share"));
    assert!(share.is_dir());
    assert_eq!((perm(&share), share.uid(), share.gid()), (0o755, 0, 0));
}

#[test]
fn old_style_and_contiguous_regular_files() {
    if !root_or_skip("old_style_and_contiguous_regular_files") {
        return;
    }
    let sb = Sandbox::new();
    let layer = Layer::new()
        .add(Entry::file("old", b"v7").raw_type(0))
        .add(Entry::file("contig", b"seven").raw_type(b'7'))
        // Pre-POSIX: a '\0' entry with a trailing slash is a directory.
        .add(Entry::file("olddir/", b"").raw_type(0).mode(0o701));
    unpack(&layer.bytes(), &sb.dest).expect("unpack");
    assert_eq!(fs::read(sb.dest.join("old")).unwrap(), b"v7");
    assert_eq!(fs::read(sb.dest.join("contig")).unwrap(), b"seven");
    let olddir = lstat(sb.dest.join("olddir"));
    assert!(olddir.is_dir());
    assert_eq!(perm(&olddir), 0o701);
}

#[test]
fn symlinks_are_stored_verbatim() {
    if !root_or_skip("symlinks_are_stored_verbatim") {
        return;
    }
    let sb = Sandbox::new();
    let layer = Layer::new()
        .add(
            Entry::symlink("abs", "/usr/bin/../lib/x")
                .owner(7, 8)
                .mtime(123),
        )
        .add(Entry::symlink("rel", "../../x"))
        .add(Entry::symlink("dangling", "nowhere/at/all"))
        .add(Entry::symlink("lib", "usr/lib"));
    let stats = unpack(&layer.bytes(), &sb.dest).expect("unpack");
    assert_eq!(stats.symlinks, 4);
    assert_eq!(
        fs::read_link(sb.dest.join("abs")).unwrap(),
        Path::new("/usr/bin/../lib/x")
    );
    assert_eq!(
        fs::read_link(sb.dest.join("rel")).unwrap(),
        Path::new("../../x")
    );
    assert_eq!(
        fs::read_link(sb.dest.join("dangling")).unwrap(),
        Path::new("nowhere/at/all")
    );
    let abs = lstat(sb.dest.join("abs"));
    assert!(abs.file_type().is_symlink());
    assert_eq!((abs.uid(), abs.gid(), abs.mtime()), (7, 8, 123));
}

#[test]
fn long_names_and_link_targets() {
    if !root_or_skip("long_names_and_link_targets") {
        return;
    }
    let sb = Sandbox::new();
    let long_dir = "d".repeat(120);
    let long_target = format!("/{}", "t".repeat(200));
    let layer = Layer::new()
        .add(Entry::file(format!("{long_dir}/f"), b"x"))
        .add(Entry::symlink("s", &long_target));
    unpack(&layer.bytes(), &sb.dest).expect("unpack");
    assert_eq!(fs::read(sb.dest.join(&long_dir).join("f")).unwrap(), b"x");
    assert_eq!(
        fs::read_link(sb.dest.join("s")).unwrap(),
        Path::new(&long_target)
    );

    // The tar crate's own GNU long-name records work as well.
    let sb = Sandbox::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o640);
    b.append_data(&mut h, format!("{long_dir}/g"), &b"hi"[..])
        .unwrap();
    unpack(&b.into_inner().unwrap(), &sb.dest).expect("unpack");
    assert_eq!(fs::read(sb.dest.join(&long_dir).join("g")).unwrap(), b"hi");
}

#[test]
fn hard_links_share_the_inode() {
    if !root_or_skip("hard_links_share_the_inode") {
        return;
    }
    let sb = Sandbox::new();
    let layer = Layer::new()
        .add(Entry::file("bin/busybox", b"bb").mode(0o755))
        .add(Entry::hardlink("bin/sh", "bin/busybox"))
        .add(Entry::hardlink("sbin/init", "/bin/busybox"))
        .add(Entry::hardlink("bin/ls", "./bin//busybox"))
        .add(Entry::symlink("bin/link", "busybox"))
        // A hard link to a symlink links the symlink itself.
        .add(Entry::hardlink("bin/link2", "bin/link"))
        // A hard link to itself is a no-op.
        .add(Entry::hardlink("bin/busybox", "bin/busybox"));
    let stats = unpack(&layer.bytes(), &sb.dest).expect("unpack");
    assert_eq!(stats.hardlinks, 4);
    let bb = lstat(sb.dest.join("bin/busybox"));
    assert_eq!(bb.nlink(), 4);
    for name in ["bin/sh", "sbin/init", "bin/ls"] {
        assert_eq!(lstat(sb.dest.join(name)).ino(), bb.ino(), "{name}");
    }
    let link2 = lstat(sb.dest.join("bin/link2"));
    assert!(link2.file_type().is_symlink());
    assert_eq!(link2.ino(), lstat(sb.dest.join("bin/link")).ino());
}

#[test]
fn devices_and_fifos() {
    if !root_or_skip("devices_and_fifos") {
        return;
    }
    let sb = Sandbox::new();
    let layer = Layer::new()
        .add(
            Entry::device("dev/null", EntryType::Char, 1, 3)
                .mode(0o666)
                .owner(0, 5)
                .mtime(99),
        )
        .add(
            Entry::device("dev/loop0", EntryType::Block, 7, 0)
                .mode(0o660)
                .owner(0, 6),
        )
        .add(Entry::device("dev/big", EntryType::Char, 4095, 1_048_575).mode(0o4600))
        .add(Entry::fifo("run/fifo").mode(0o620).owner(3, 4));
    let stats = unpack(&layer.bytes(), &sb.dest).expect("unpack");
    assert_eq!((stats.devices, stats.fifos), (3, 1));

    let null = lstat(sb.dest.join("dev/null"));
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(
        (perm(&null), null.uid(), null.gid(), null.mtime()),
        (0o666, 0, 5, 99)
    );
    let lp = lstat(sb.dest.join("dev/loop0"));
    assert!(lp.file_type().is_block_device());
    assert_eq!(lp.rdev(), rustix::fs::makedev(7, 0));
    assert_eq!((perm(&lp), lp.gid()), (0o660, 6));
    let big = lstat(sb.dest.join("dev/big"));
    assert_eq!(big.rdev(), rustix::fs::makedev(4095, 1_048_575));
    assert_eq!(perm(&big), 0o4600);
    let fifo = lstat(sb.dest.join("run/fifo"));
    assert!(fifo.file_type().is_fifo());
    assert_eq!((perm(&fifo), fifo.uid(), fifo.gid()), (0o620, 3, 4));
}

#[test]
fn xattrs_are_applied_and_overlay_ones_dropped() {
    if !root_or_skip("xattrs_are_applied_and_overlay_ones_dropped") {
        return;
    }
    let sb = Sandbox::new();
    let layer = Layer::new()
        .add(Entry::dir("d").xattr("user.dir", "dv"))
        .add(
            Entry::file("d/f", b"x")
                .owner(1000, 1000)
                .mode(0o4755)
                .xattr("user.test", b"value\0with nul")
                .xattr("trusted.berth", "t")
                // An image must not forge overlayfs metadata.
                .xattr("trusted.overlay.opaque", "y")
                .xattr("trusted.overlay.redirect", "/etc")
                .xattr("user.overlay.origin", "x"),
        )
        // user.* is refused on symlinks (EPERM): tolerated, counted.
        .add(
            Entry::symlink("d/s", "f")
                .xattr("user.nope", "1")
                .xattr("trusted.link", "L"),
        )
        .add(Entry::fifo("d/p").xattr("trusted.fifo", "F"));
    let stats = unpack(&layer.bytes(), &sb.dest).expect("unpack");
    let f = sb.dest.join("d/f");
    assert_eq!(
        xattr(&f, b"user.test").as_deref(),
        Some(&b"value\0with nul"[..])
    );
    assert_eq!(xattr(&f, b"trusted.berth").as_deref(), Some(&b"t"[..]));
    assert_eq!(xattr(&f, b"trusted.overlay.opaque"), None);
    assert_eq!(xattr(&f, b"trusted.overlay.redirect"), None);
    assert_eq!(xattr(&f, b"user.overlay.origin"), None);
    assert_eq!(perm(&lstat(&f)), 0o4755);
    assert_eq!(
        xattr(&sb.dest.join("d"), b"user.dir").as_deref(),
        Some(&b"dv"[..])
    );
    let s = sb.dest.join("d/s");
    assert_eq!(xattr(&s, b"trusted.link").as_deref(), Some(&b"L"[..]));
    assert_eq!(xattr(&s, b"user.nope"), None);
    assert_eq!(
        xattr(&f, b"trusted.link"),
        None,
        "symlink xattr not set on its target"
    );
    assert_eq!(
        xattr(&sb.dest.join("d/p"), b"trusted.fifo").as_deref(),
        Some(&b"F"[..])
    );
    assert_eq!(stats.xattrs_skipped, 4);
}

#[test]
fn pax_mtime_keeps_nanoseconds() {
    if !root_or_skip("pax_mtime_keeps_nanoseconds") {
        return;
    }
    let sb = Sandbox::new();
    let layer = Layer::new()
        .add(Entry::file("f", b"x").pax("mtime", "1700000000.123456789"))
        .add(Entry::dir("d").pax("mtime", "1700000001.5"));
    unpack(&layer.bytes(), &sb.dest).expect("unpack");
    let f = lstat(sb.dest.join("f"));
    assert_eq!((f.mtime(), f.mtime_nsec()), (1_700_000_000, 123_456_789));
    let d = lstat(sb.dest.join("d"));
    assert_eq!((d.mtime(), d.mtime_nsec()), (1_700_000_001, 500_000_000));
}

#[test]
fn whiteouts_become_0_0_char_devices() {
    if !root_or_skip("whiteouts_become_0_0_char_devices") {
        return;
    }
    let sb = Sandbox::new();
    let layer = Layer::new()
        .add(Entry::dir("etc"))
        .add(Entry::whiteout("etc/.wh.passwd"))
        // The parent is created when missing.
        .add(Entry::whiteout("var/lib/.wh.old"))
        // Any `.wh.` name is a whiteout, also of an aufs-style meta name.
        .add(Entry::whiteout(".wh..wh.plnk"))
        // The layer adds then deletes a file: the whiteout wins.
        .add(Entry::file("tmp/x", b"x"))
        .add(Entry::whiteout("tmp/.wh.x"));
    let stats = unpack(&layer.bytes(), &sb.dest).expect("unpack");
    assert_eq!(stats.whiteouts, 4);
    for name in ["etc/passwd", "var/lib/old", ".wh.plnk", "tmp/x"] {
        let md = lstat(sb.dest.join(name));
        assert!(md.file_type().is_char_device(), "{name}");
        assert_eq!(md.rdev(), 0, "{name}");
    }
    for name in [
        "etc/.wh.passwd",
        "var/lib/.wh.old",
        ".wh..wh.plnk",
        "tmp/.wh.x",
    ] {
        assert!(
            fs::symlink_metadata(sb.dest.join(name)).is_err(),
            "{name} written"
        );
    }
    assert!(lstat(sb.dest.join("var/lib")).is_dir());
}

#[test]
fn opaque_markers_set_the_overlay_xattr() {
    if !root_or_skip("opaque_markers_set_the_overlay_xattr") {
        return;
    }
    let sb = Sandbox::new();
    let layer = Layer::new()
        .add(Entry::dir("a").mode(0o711))
        .add(Entry::whiteout("a/.wh..wh..opq"))
        .add(Entry::file("a/kept", b"k"))
        // Marker before its directory's entry: the directory merges.
        .add(Entry::whiteout("b/.wh..wh..opq"))
        .add(Entry::dir("b").mode(0o700))
        // Marker of a directory that has no entry.
        .add(Entry::whiteout("c/d/.wh..wh..opq"));
    let stats = unpack(&layer.bytes(), &sb.dest).expect("unpack");
    assert_eq!(stats.opaque_dirs, 3);
    for (dir, mode) in [("a", 0o711), ("b", 0o700), ("c/d", 0o755)] {
        let p = sb.dest.join(dir);
        assert_eq!(
            xattr(&p, b"trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..]),
            "{dir}"
        );
        assert_eq!(perm(&lstat(&p)), mode, "{dir}");
        assert!(
            fs::symlink_metadata(p.join(".wh..wh..opq")).is_err(),
            "{dir}: marker written"
        );
    }
    assert_eq!(fs::read(sb.dest.join("a/kept")).unwrap(), b"k");
}

#[test]
fn later_entries_replace_earlier_ones() {
    if !root_or_skip("later_entries_replace_earlier_ones") {
        return;
    }
    let sb = Sandbox::new();
    let layer = Layer::new()
        // file by file
        .add(Entry::file("ff", b"first").mode(0o600))
        .add(Entry::file("ff", b"second").mode(0o644))
        // file by dir
        .add(Entry::file("fd", b"file"))
        .add(Entry::dir("fd").mode(0o750))
        // dir (with contents) by file
        .add(Entry::dir("df"))
        .add(Entry::file("df/sub/deep", b"x"))
        .add(Entry::symlink("df/sub/link", "/"))
        .add(Entry::file("df", b"now a file"))
        // symlink by file
        .add(Entry::symlink("sf", "ff"))
        .add(Entry::file("sf", b"own"))
        // dir by dir merges, the later metadata wins
        .add(Entry::dir("dd").mode(0o700).mtime(5))
        .add(Entry::file("dd/keep", b"kept"))
        .add(Entry::dir("dd").mode(0o755).mtime(6))
        // symlink by dir
        .add(Entry::symlink("sd", "dd"))
        .add(Entry::dir("sd"))
        // file by symlink, file by hard link
        .add(Entry::file("fs", b"x"))
        .add(Entry::symlink("fs", "ff"))
        .add(Entry::file("fh", b"x"))
        .add(Entry::hardlink("fh", "ff"));
    unpack(&layer.bytes(), &sb.dest).expect("unpack");
    let d = &sb.dest;
    assert_eq!(fs::read(d.join("ff")).unwrap(), b"second");
    assert_eq!(perm(&lstat(d.join("ff"))), 0o644);
    assert!(lstat(d.join("fd")).is_dir());
    assert_eq!(perm(&lstat(d.join("fd"))), 0o750);
    assert_eq!(fs::read(d.join("df")).unwrap(), b"now a file");
    assert!(lstat(d.join("sf")).is_file());
    assert_eq!(fs::read(d.join("sf")).unwrap(), b"own");
    assert_eq!(
        fs::read(d.join("ff")).unwrap(),
        b"second",
        "symlink target untouched"
    );
    let dd = lstat(d.join("dd"));
    assert_eq!((perm(&dd), dd.mtime()), (0o755, 6));
    assert_eq!(fs::read(d.join("dd/keep")).unwrap(), b"kept");
    assert!(lstat(d.join("sd")).is_dir());
    assert!(lstat(d.join("fs")).file_type().is_symlink());
    assert_eq!(lstat(d.join("fh")).ino(), lstat(d.join("ff")).ino());
}

#[test]
fn root_directory_entries_are_ignored() {
    if !root_or_skip("root_directory_entries_are_ignored") {
        return;
    }
    let sb = Sandbox::new();
    fs::set_permissions(&sb.dest, fs::Permissions::from_mode(0o711)).unwrap();
    let layer = Layer::new()
        .add(Entry::dir("./").mode(0o777).owner(1, 1))
        .add(Entry::dir("/").mode(0o777).owner(1, 1))
        .add(Entry::dir("").mode(0o777).owner(1, 1))
        .add(
            Entry::dir(".")
                .mode(0o777)
                .owner(1, 1)
                .xattr("user.root", "x"),
        )
        .add(Entry::file("f", b"x"));
    unpack(&layer.bytes(), &sb.dest).expect("unpack");
    let md = lstat(&sb.dest);
    assert_eq!((perm(&md), md.uid(), md.gid()), (0o711, 0, 0));
    assert_eq!(xattr(&sb.dest, b"user.root"), None);
}

#[test]
fn without_ownership_everything_is_ours() {
    if !root_or_skip("without_ownership_everything_is_ours") {
        return;
    }
    let sb = Sandbox::new();
    let layer = Layer::new()
        .add(Entry::dir("d").owner(1000, 1000))
        .add(Entry::file("d/f", b"x").owner(1000, 1000).mode(0o4755))
        .add(Entry::symlink("d/s", "f").owner(1000, 1000));
    let opts = UnpackOptions::default().preserve_ownership(false);
    unpack_layer(&layer.bytes()[..], &sb.dest, &opts).expect("unpack");
    for name in ["d", "d/f", "d/s"] {
        let md = lstat(sb.dest.join(name));
        assert_eq!((md.uid(), md.gid()), (0, 0), "{name}");
    }
    assert_eq!(perm(&lstat(sb.dest.join("d/f"))), 0o4755);
}

#[test]
fn pax_global_headers_are_skipped() {
    if !root_or_skip("pax_global_headers_are_skipped") {
        return;
    }
    let sb = Sandbox::new();
    let layer = Layer::new()
        .add(Entry::file("pax_global_header", b"").raw_type(b'g'))
        .add(Entry::file("f", b"x"));
    let stats = unpack(&layer.bytes(), &sb.dest).expect("unpack");
    assert_eq!(stats.entries, 1);
    assert!(fs::symlink_metadata(sb.dest.join("pax_global_header")).is_err());
}

/// A tar stream of one 64 MiB file of zeros, generated while it is read.
fn big_file_tar(size: u64) -> impl Read {
    let mut h = tar::Header::new_gnu();
    h.set_path("big").unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(EntryType::Regular);
    h.set_cksum();
    let header = h.as_bytes().to_vec();
    let padding = (512 - size % 512) % 512;
    io::Cursor::new(header)
        .chain(io::repeat(0).take(size + padding))
        .chain(io::repeat(0).take(1024))
}

#[test]
fn large_files_are_streamed() {
    if !root_or_skip("large_files_are_streamed") {
        return;
    }
    let sb = Sandbox::new();
    let size = 64 * 1024 * 1024;
    let stats =
        unpack_layer(big_file_tar(size), &sb.dest, &UnpackOptions::default()).expect("unpack");
    assert_eq!(stats.bytes, size);
    assert_eq!(lstat(sb.dest.join("big")).len(), size);
}

#[test]
fn unsupported_entries_are_errors() {
    if !root_or_skip("unsupported_entries_are_errors") {
        return;
    }
    for (name, entry) in [
        ("gnu sparse", Entry::file("sparse", b"").raw_type(b'S')),
        (
            "pax sparse",
            Entry::file("sparse", b"").pax("GNU.sparse.major", "1"),
        ),
        ("volume header", Entry::file("vol", b"").raw_type(b'V')),
        ("unknown", Entry::file("what", b"").raw_type(b'Z')),
    ] {
        let sb = Sandbox::new();
        let result = unpack(&Layer::new().add(entry).bytes(), &sb.dest);
        assert!(
            matches!(&result, Err(UnpackError::UnsupportedEntry { .. })),
            "{name}: {result:?}"
        );
    }
}

#[test]
fn corrupt_streams_are_tar_errors() {
    if !root_or_skip("corrupt_streams_are_tar_errors") {
        return;
    }
    let good = Layer::new().add(Entry::file("f", vec![7u8; 2000])).bytes();

    let mut bad_checksum = good.clone();
    bad_checksum[0] ^= 1;
    let sb = Sandbox::new();
    let result = unpack(&bad_checksum, &sb.dest);
    assert!(matches!(result, Err(UnpackError::Tar(_))), "{result:?}");

    // Cut inside the file's data.
    let sb = Sandbox::new();
    let result = unpack(&good[..512 + 1000], &sb.dest);
    let Err(UnpackError::Tar(e)) = &result else {
        panic!("truncated: {result:?}");
    };
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    assert!(e.to_string().contains("\"f\""), "names the entry: {e}");
}

#[test]
fn malformed_entries_are_invalid() {
    if !root_or_skip("malformed_entries_are_invalid") {
        return;
    }
    for (name, entry) in [
        (
            "nul in pax path",
            Entry::file("x", b"").pax("path", b"a\0b"),
        ),
        ("empty symlink target", Entry::symlink("s", "")),
        ("empty hard link target", Entry::hardlink("h", "")),
        ("whiteout of nothing", Entry::whiteout(".wh.")),
        ("whiteout of dot", Entry::whiteout("a/.wh..")),
        ("whiteout of dotdot", Entry::whiteout("a/.wh...")),
        ("uid -1", Entry::file("f", b"").pax("uid", "4294967295")),
        ("bad pax mtime", Entry::file("f", b"").pax("mtime", "soon")),
        ("hard link to a directory", Entry::hardlink("h", "d")),
    ] {
        let sb = Sandbox::new();
        fs::create_dir(sb.dest.join("d")).unwrap();
        let result = unpack(&Layer::new().add(entry).bytes(), &sb.dest);
        assert!(
            matches!(&result, Err(UnpackError::Invalid { .. })),
            "{name}: {result:?}"
        );
    }
}

#[test]
fn missing_destination_is_an_io_error() {
    let result = unpack(&Layer::new().bytes(), Path::new("/nonexistent/berth/dest"));
    assert!(
        matches!(
            &result,
            Err(UnpackError::Io {
                op: "open destination directory",
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn oversized_headers_are_refused_before_buffering() {
    if !root_or_skip("oversized_headers_are_refused_before_buffering") {
        return;
    }
    let limit = usize::try_from(crate::unpack::budget::METADATA_LIMIT).unwrap();
    // Just under the cap: fine (a big but legal PAX record).
    let sb = Sandbox::new();
    let ok = Layer::new().add(Entry::file("f", b"x").pax("comment", vec![b'a'; limit - 4096]));
    unpack(&ok.bytes(), &sb.dest).expect("large PAX header under the cap");
    // Over it: a Tar error, not an allocation of whatever the layer claims.
    let sb = Sandbox::new();
    let bomb = Layer::new().add(Entry::file("f", b"x").pax("comment", vec![b'a'; limit + 1]));
    let result = unpack(&bomb.bytes(), &sb.dest);
    let Err(UnpackError::Tar(e)) = &result else {
        panic!("expected a Tar error: {result:?}");
    };
    assert!(e.to_string().contains("MiB of headers"), "{e}");
    // Entry data is not capped (the 64 MiB test streams past it too).
    let sb = Sandbox::new();
    let big = Layer::new().add(Entry::file("f", vec![1u8; limit + 1]));
    unpack(&big.bytes(), &sb.dest).expect("data is not capped");
}
