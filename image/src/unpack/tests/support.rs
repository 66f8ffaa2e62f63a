//! Test helpers: layers built in memory with arbitrary (also hostile) raw
//! names, a sandbox with an "outside" to guard, and a fingerprint of
//! everything outside `dest` that catches any write, chmod, chown, link or
//! xattr change (through ctime and link counts).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::unpack::{UnpackError, UnpackOptions, UnpackStats, unpack_layer};

pub(super) use berth_testkit::root_or_skip;

/// One tar entry, written with a hand-made header so any name goes in.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    name: Vec<u8>,
    kind: EntryType,
    raw_type: Option<u8>,
    link: Option<Vec<u8>>,
    data: Vec<u8>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    dev: Option<(u32, u32)>,
    pax: Vec<(String, Vec<u8>)>,
}

impl Entry {
    fn new(name: impl AsRef<[u8]>, kind: EntryType, mode: u32) -> Self {
        Self {
            name: name.as_ref().to_vec(),
            kind,
            raw_type: None,
            link: None,
            data: Vec::new(),
            mode,
            uid: 0,
            gid: 0,
            mtime: 1_000_000_000,
            dev: None,
            pax: Vec::new(),
        }
    }

    pub(super) fn file(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> Self {
        let mut e = Self::new(name, EntryType::Regular, 0o644);
        e.data = data.as_ref().to_vec();
        e
    }

    pub(super) fn dir(name: impl AsRef<[u8]>) -> Self {
        Self::new(name, EntryType::Directory, 0o755)
    }

    pub(super) fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        let mut e = Self::new(name, EntryType::Symlink, 0o777);
        e.link = Some(target.as_ref().to_vec());
        e
    }

    pub(super) fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        let mut e = Self::new(name, EntryType::Link, 0o644);
        e.link = Some(target.as_ref().to_vec());
        e
    }

    pub(super) fn device(name: impl AsRef<[u8]>, kind: EntryType, major: u32, minor: u32) -> Self {
        let mut e = Self::new(name, kind, 0o666);
        e.dev = Some((major, minor));
        e
    }

    pub(super) fn fifo(name: impl AsRef<[u8]>) -> Self {
        Self::new(name, EntryType::Fifo, 0o644)
    }

    /// A zero-length regular file (how docker writes whiteouts).
    pub(super) fn whiteout(name: impl AsRef<[u8]>) -> Self {
        Self::new(name, EntryType::Regular, 0o644)
    }

    pub(super) fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    pub(super) fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub(super) fn mtime(mut self, mtime: u64) -> Self {
        self.mtime = mtime;
        self
    }

    /// Overrides the type flag byte itself ('\0', '7', 'S', ...).
    pub(super) fn raw_type(mut self, byte: u8) -> Self {
        self.raw_type = Some(byte);
        self
    }

    pub(super) fn pax(mut self, key: &str, value: impl AsRef<[u8]>) -> Self {
        self.pax.push((key.to_owned(), value.as_ref().to_vec()));
        self
    }

    pub(super) fn xattr(self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.pax(&format!("SCHILY.xattr.{name}"), value)
    }

    fn header(&self, pax: &mut Vec<(String, Vec<u8>)>) -> Header {
        let mut h = Header::new_gnu();
        let old = h.as_old_mut();
        if self.name.len() <= old.name.len() {
            old.name[..self.name.len()].copy_from_slice(&self.name);
        } else {
            pax.push(("path".to_owned(), self.name.clone()));
        }
        if let Some(link) = &self.link {
            if link.len() <= old.linkname.len() {
                old.linkname[..link.len()].copy_from_slice(link);
            } else {
                pax.push(("linkpath".to_owned(), link.clone()));
            }
        }
        h.set_entry_type(self.kind);
        if let Some(byte) = self.raw_type {
            h.as_old_mut().linkflag = [byte];
        }
        if self.raw_type == Some(b'S') {
            // A well-formed GNU sparse header: one chunk, all data.
            let gnu = h.as_gnu_mut().expect("gnu header");
            let octal = |v: usize| format!("{v:011o}\0").into_bytes();
            gnu.realsize.copy_from_slice(&octal(self.data.len()));
            gnu.sparse[0].offset.copy_from_slice(&octal(0));
            gnu.sparse[0]
                .numbytes
                .copy_from_slice(&octal(self.data.len()));
        }
        h.set_size(self.data.len() as u64);
        h.set_mode(self.mode);
        h.set_uid(self.uid);
        h.set_gid(self.gid);
        h.set_mtime(self.mtime);
        if let Some((major, minor)) = self.dev {
            h.set_device_major(major).expect("device major");
            h.set_device_minor(minor).expect("device minor");
        }
        h.set_cksum();
        h
    }
}

/// A layer tar built in memory.
pub(super) struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

impl Layer {
    pub(super) fn new() -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    pub(super) fn add(mut self, e: Entry) -> Self {
        let mut pax = e.pax.clone();
        let header = e.header(&mut pax);
        if !pax.is_empty() {
            self.builder
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .expect("pax");
        }
        self.builder
            .append(&header, e.data.as_slice())
            .expect("append");
        self
    }

    pub(super) fn bytes(self) -> Vec<u8> {
        self.builder.into_inner().expect("finish tar")
    }
}

/// Unpacks as root does: preserving owners.
pub(super) fn unpack(layer: &[u8], dest: &Path) -> Result<UnpackStats, UnpackError> {
    unpack_layer(
        layer,
        dest,
        &UnpackOptions::default().preserve_ownership(true),
    )
}

/// `<tmp>/top/{dest/, outside/{file, sub/f2}, victim}`: `dest` is unpacked
/// into, the rest must never change.
pub(super) struct Sandbox {
    _tmp: tempfile::TempDir,
    pub(super) top: PathBuf,
    pub(super) dest: PathBuf,
    pub(super) outside: PathBuf,
}

pub(super) const ORIGINAL: &[u8] = b"original\n";

impl Sandbox {
    pub(super) fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let top = tmp.path().join("top");
        let dest = top.join("dest");
        let outside = top.join("outside");
        fs::create_dir(&top).expect("top");
        fs::create_dir(&dest).expect("dest");
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).expect("chmod dest");
        fs::create_dir_all(outside.join("sub")).expect("outside");
        fs::write(outside.join("file"), ORIGINAL).expect("outside/file");
        fs::set_permissions(outside.join("file"), fs::Permissions::from_mode(0o644))
            .expect("chmod");
        fs::write(outside.join("sub/f2"), ORIGINAL).expect("outside/sub/f2");
        fs::write(top.join("victim"), ORIGINAL).expect("victim");
        Self {
            _tmp: tmp,
            top,
            dest,
            outside,
        }
    }

    /// The outside file's absolute path, as raw bytes for entry names.
    pub(super) fn abs(&self, rel: &str) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        self.top.join(rel).as_os_str().as_bytes().to_vec()
    }

    /// Everything under `top` except `dest`'s contents (`dest`'s own entry
    /// included, minus its times which unpacking legitimately changes).
    pub(super) fn fingerprint(&self) -> BTreeMap<PathBuf, Fingerprint> {
        let mut out = BTreeMap::new();
        walk(&self.top, &self.dest, &mut out);
        out
    }
}

/// What we compare of one inode.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Fingerprint {
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    ino: u64,
    size: u64,
    rdev: u64,
    /// (mtime, ctime) in ns; ctime moves on any chmod, chown, link, write
    /// or xattr change, even one that sets the same values.
    times: Option<(i64, i64)>,
    content: Option<Vec<u8>>,
    link: Option<PathBuf>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn walk(path: &Path, dest: &Path, out: &mut BTreeMap<PathBuf, Fingerprint>) {
    let md = fs::symlink_metadata(path).expect("lstat");
    let is_dest = path == dest;
    let ft = md.file_type();
    out.insert(
        path.to_owned(),
        Fingerprint {
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            nlink: if is_dest { 0 } else { md.nlink() },
            ino: md.ino(),
            size: if is_dest { 0 } else { md.size() },
            rdev: md.rdev(),
            times: (!is_dest).then(|| {
                (
                    md.mtime() * 1_000_000_000 + md.mtime_nsec(),
                    md.ctime() * 1_000_000_000 + md.ctime_nsec(),
                )
            }),
            content: ft.is_file().then(|| fs::read(path).expect("read")),
            link: ft
                .is_symlink()
                .then(|| fs::read_link(path).expect("readlink")),
            xattrs: xattrs(path),
        },
    );
    if ft.is_dir() && !is_dest {
        let mut children: Vec<_> = fs::read_dir(path)
            .expect("read_dir")
            .map(|e| e.expect("dirent").path())
            .collect();
        children.sort();
        for child in children {
            walk(&child, dest, out);
        }
    }
}

/// All xattrs of `path` itself (not following a symlink).
pub(super) fn xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names = vec![0u8; 64 * 1024];
    let n = rustix::fs::llistxattr(path, &mut names[..]).expect("llistxattr");
    names[..n]
        .split(|&b| b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| (name.to_vec(), xattr(path, name).unwrap_or_default()))
        .collect()
}

/// One xattr of `path` itself, if set.
pub(super) fn xattr(path: &Path, name: &[u8]) -> Option<Vec<u8>> {
    let mut value = vec![0u8; 64 * 1024];
    let n = rustix::fs::lgetxattr(path, name, &mut value[..]).ok()?;
    value.truncate(n);
    Some(value)
}

/// Builds the layer against a fresh sandbox, unpacks it, and asserts that
/// nothing outside `dest` changed. Returns the sandbox and the result for
/// the test's own checks.
pub(super) fn hostile(
    build: impl FnOnce(&Sandbox) -> Layer,
) -> (Sandbox, Result<UnpackStats, UnpackError>) {
    let sb = Sandbox::new();
    let layer = build(&sb).bytes();
    let before = sb.fingerprint();
    let result = unpack(&layer, &sb.dest);
    let after = sb.fingerprint();
    for (path, fp) in &before {
        assert_eq!(
            after.get(path),
            Some(fp),
            "{} changed (result: {result:?})",
            path.display()
        );
    }
    let added: Vec<_> = after.keys().filter(|p| !before.contains_key(*p)).collect();
    assert!(
        added.is_empty(),
        "created outside dest: {added:?} (result: {result:?})"
    );
    (sb, result)
}

/// Asserts `result` is an `Escape` error.
pub(super) fn assert_escape(result: &Result<UnpackStats, UnpackError>) {
    assert!(
        matches!(result, Err(UnpackError::Escape { .. })),
        "expected Escape, got {result:?}"
    );
}

pub(super) fn lstat(path: impl AsRef<Path>) -> fs::Metadata {
    fs::symlink_metadata(path.as_ref())
        .unwrap_or_else(|e| panic!("lstat {}: {e}", path.as_ref().display()))
}
