//! Applying one tar entry to the layer root.
//!
//! For every entry: normalize its name (`path.rs`), resolve or create its
//! parent directory inside the root (`resolve.rs`), then create the final
//! component relative to that parent fd with `*at()` calls that never follow
//! it. Whatever already exists under that name is removed first (a
//! directory replaced by a directory is kept and merged), so an existing
//! symlink is replaced, never written through.
//!
//! Metadata order, for every kind: content, owner, xattrs, mode, times.
//! chown clears setuid/setgid and `security.capability`, so mode and xattrs
//! come after it; directories get mode and times at the very end
//! (`dirs.rs`).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Uid};
use rustix::io::Errno;

use super::dirs::DeferredDirs;
use super::error::{OpContext, UnpackError};
use super::fsops::{self, Inode, is_dir, lstat_at};
use super::meta::{Kind, Meta, read_meta, tar_error};
use super::path::{Component, Name, PathProblem, classify, is_valid_whiteout_target, normalize};
use super::resolve::Root;
use super::{UnpackOptions, UnpackStats};

/// Size of the buffer regular files are streamed through.
const COPY_BUF: usize = 128 * 1024;

/// The xattr overlayfs reads to mark a directory opaque.
const OVERLAY_OPAQUE: &[u8] = b"trusted.overlay.opaque";

/// Applies entries to one layer root; see the module docs.
#[derive(Debug)]
pub(crate) struct Unpacker<'o> {
    root: Root,
    opts: &'o UnpackOptions,
    stats: UnpackStats,
    dirs: DeferredDirs,
    buf: Vec<u8>,
}

/// Where an entry goes: its resolved parent directory and final name.
struct Slot<'a> {
    /// The entry name as written in the archive, for errors.
    path: &'a Path,
    /// The normalized name (last component is `name`).
    comps: &'a [Component],
    parent: OwnedFd,
    name: &'a [u8],
}

impl Slot<'_> {
    fn parent(&self) -> BorrowedFd<'_> {
        self.parent.as_fd()
    }
}

fn escape(path: &Path, reason: &'static str) -> UnpackError {
    UnpackError::Escape {
        path: path.to_owned(),
        reason,
    }
}

fn invalid(path: &Path, reason: &'static str) -> UnpackError {
    UnpackError::Invalid {
        path: path.to_owned(),
        reason,
    }
}

fn path_problem(path: &Path, problem: PathProblem, what: &'static str) -> UnpackError {
    match problem {
        PathProblem::Nul => invalid(path, "NUL byte in a name"),
        PathProblem::EscapesRoot => escape(path, what),
    }
}

fn errno_is(e: &io::Error, errno: Errno) -> bool {
    e.raw_os_error() == Some(errno.raw_os_error())
}

impl<'o> Unpacker<'o> {
    pub(crate) fn new(root: Root, opts: &'o UnpackOptions) -> Self {
        Self {
            root,
            opts,
            stats: UnpackStats::default(),
            dirs: DeferredDirs::default(),
            buf: vec![0; COPY_BUF],
        }
    }

    /// Applies the deferred directory metadata and returns the totals.
    pub(crate) fn finish(self) -> Result<UnpackStats, UnpackError> {
        self.dirs.apply(&self.root)?;
        Ok(self.stats)
    }

    /// Applies one entry.
    pub(crate) fn apply<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
    ) -> Result<(), UnpackError> {
        let raw = entry.path_bytes().into_owned();
        let path = PathBuf::from(OsString::from_vec(raw.clone()));
        if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
            tracing::debug!(path = ?path, "PAX global header ignored");
            return Ok(());
        }
        let comps = normalize(&raw)
            .map_err(|p| path_problem(&path, p, "`..` climbs above the layer root"))?;
        self.stats.entries += 1;
        let Some((last, parent)) = comps.split_last() else {
            return self.root_entry(&entry, &raw, &path);
        };
        // Whiteouts are recognised by name alone, whatever their type flag.
        match classify(last) {
            Name::Opaque => return self.opaque(&path, parent),
            Name::Whiteout(target) => return self.whiteout(&path, parent, target),
            Name::Plain => {}
        }
        let Some(kind) = Kind::of(entry.header(), &raw, &path)? else {
            return Ok(());
        };
        let meta = read_meta(&mut entry, &path)?;
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let slot = Slot {
            path: &path,
            comps: &comps,
            parent: self.parent_dir(parent).map_err(|e| e.at(&path))?,
            name: last,
        };
        match kind {
            Kind::File => self.file(&slot, &meta, &mut entry),
            Kind::Dir => self.dir(&slot, &meta),
            Kind::Symlink => self.symlink(&slot, &meta, link.as_deref()),
            Kind::HardLink => self.hard_link(&slot, link.as_deref()),
            Kind::CharDevice | Kind::BlockDevice => {
                let dev = device_numbers(entry.header(), &path)?;
                let ft = if kind == Kind::CharDevice {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                self.node(&slot, &meta, ft, dev)
            }
            Kind::Fifo => self.node(&slot, &meta, FileType::Fifo, 0),
        }
    }

    /// An entry naming the root itself (`.`, `/`, `./`, empty). A directory
    /// is ignored, as containerd does: the root's mode and owner are the
    /// caller's. Anything else would replace the root: hostile.
    fn root_entry<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        raw: &[u8],
        path: &Path,
    ) -> Result<(), UnpackError> {
        match Kind::of(entry.header(), raw, path)? {
            None => Ok(()),
            Some(Kind::Dir) => {
                tracing::debug!(path = ?path, "directory entry for the layer root ignored");
                Ok(())
            }
            Some(_) => Err(escape(path, "entry would replace the layer root")),
        }
    }

    /// Owner for created parent directories: root, when preserving owners.
    fn implicit_owner(&self) -> Option<(Uid, Gid)> {
        self.opts
            .preserve_ownership
            .then_some((Uid::ROOT, Gid::ROOT))
    }

    fn owner(&self, meta: &Meta) -> Option<(Uid, Gid)> {
        self.opts
            .preserve_ownership
            .then(|| (Uid::from_raw(meta.uid), Gid::from_raw(meta.gid)))
    }

    fn parent_dir(&self, comps: &[Component]) -> Result<OwnedFd, super::error::OpError> {
        self.root.ensure_dir(comps, self.implicit_owner())
    }

    /// Makes `slot` free for a new entry: removes what is there, unless both
    /// are directories (then the old one is kept: `Ok(true)`).
    fn clear(&mut self, slot: &Slot<'_>, new_is_dir: bool) -> Result<bool, UnpackError> {
        let existing = lstat_at(slot.parent(), slot.name)
            .op("inspect existing entry")
            .map_err(|e| e.at(slot.path))?;
        let Some(st) = existing else {
            return Ok(false);
        };
        if new_is_dir && is_dir(&st) {
            return Ok(true);
        }
        let removed = fsops::remove(slot.parent(), slot.name, &st)
            .op("remove replaced entry")
            .map_err(|e| e.at(slot.path))?;
        self.dirs.forget(&removed);
        Ok(false)
    }

    fn file<R: Read>(
        &mut self,
        slot: &Slot<'_>,
        meta: &Meta,
        data: &mut tar::Entry<'_, R>,
    ) -> Result<(), UnpackError> {
        let size = data.size();
        self.clear(slot, false)?;
        // O_EXCL: we only ever write a file we just created.
        let fd = rustix::fs::openat(
            slot.parent(),
            slot.name,
            OFlags::WRONLY
                | OFlags::CREATE
                | OFlags::EXCL
                | OFlags::NOFOLLOW
                | OFlags::NOCTTY
                | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .op("create regular file")
        .map_err(|e| e.at(slot.path))?;
        let mut file = File::from(fd);
        let written = self.copy(data, &mut file, slot.path)?;
        if written != size {
            let e = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{written} of {size} data bytes"),
            );
            return Err(tar_error(slot.path, e));
        }
        self.fd_metadata(slot.path, file.as_fd(), meta)?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(meta.mode))
            .op("chmod regular file")
            .map_err(|e| e.at(slot.path))?;
        rustix::fs::futimens(&file, &fsops::timestamps(meta.mtime))
            .op("set file times")
            .map_err(|e| e.at(slot.path))?;
        self.stats.files += 1;
        self.stats.bytes += written;
        Ok(())
    }

    /// Streams entry data to `file` through a fixed buffer.
    fn copy<R: Read>(
        &mut self,
        data: &mut tar::Entry<'_, R>,
        file: &mut File,
        path: &Path,
    ) -> Result<u64, UnpackError> {
        let mut total: u64 = 0;
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(tar_error(path, e)),
            };
            file.write_all(&self.buf[..n])
                .op("write regular file")
                .map_err(|e| e.at(path))?;
            total += n as u64;
        }
    }

    fn dir(&mut self, slot: &Slot<'_>, meta: &Meta) -> Result<(), UnpackError> {
        let merged = self.clear(slot, true)?;
        if !merged {
            // 0700 until the final mode is applied at the end (dirs.rs).
            rustix::fs::mkdirat(slot.parent(), slot.name, Mode::from_raw_mode(0o700))
                .op("create directory")
                .map_err(|e| e.at(slot.path))?;
        }
        let dir = fsops::open_dir(slot.parent(), slot.name)
            .op("open directory")
            .map_err(|e| e.at(slot.path))?;
        self.fd_metadata(slot.path, dir.as_fd(), meta)?;
        let st = rustix::fs::fstat(&dir)
            .op("stat directory")
            .map_err(|e| e.at(slot.path))?;
        self.dirs
            .record(Inode::of(&st), slot.comps, meta.mode, meta.mtime);
        self.stats.dirs += 1;
        Ok(())
    }

    fn symlink(
        &mut self,
        slot: &Slot<'_>,
        meta: &Meta,
        target: Option<&[u8]>,
    ) -> Result<(), UnpackError> {
        // The target is stored verbatim; it is only ever resolved later by
        // openat2 IN_ROOT (here) or inside the container's root.
        let target = match target {
            None | Some(b"") => return Err(invalid(slot.path, "symlink without target")),
            Some(t) if t.contains(&0) => {
                return Err(invalid(slot.path, "NUL byte in symlink target"));
            }
            Some(t) => t,
        };
        self.clear(slot, false)?;
        rustix::fs::symlinkat(target, slot.parent(), slot.name)
            .op("create symlink")
            .map_err(|e| e.at(slot.path))?;
        self.at_metadata(slot, meta, false)?;
        self.stats.symlinks += 1;
        Ok(())
    }

    /// Character and block devices and FIFOs.
    fn node(
        &mut self,
        slot: &Slot<'_>,
        meta: &Meta,
        ft: FileType,
        dev: rustix::fs::Dev,
    ) -> Result<(), UnpackError> {
        self.clear(slot, false)?;
        rustix::fs::mknodat(
            slot.parent(),
            slot.name,
            ft,
            Mode::from_raw_mode(0o600),
            dev,
        )
        .op("create device node or FIFO")
        .map_err(|e| e.at(slot.path))?;
        self.at_metadata(slot, meta, true)?;
        if ft == FileType::Fifo {
            self.stats.fifos += 1;
        } else {
            self.stats.devices += 1;
        }
        Ok(())
    }

    /// A hard link to an entry already in the root. The target name follows
    /// the same rules as entry names (`..` above the root is an escape, a
    /// leading `/` means the root); its parent is resolved IN_ROOT and
    /// `linkat` never follows the final component (a link to a symlink links
    /// the symlink itself). The header's metadata is not applied: the inode
    /// already got it from its own entry.
    fn hard_link(&mut self, slot: &Slot<'_>, target: Option<&[u8]>) -> Result<(), UnpackError> {
        let target = target
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid(slot.path, "hard link without target"))?;
        let tcomps = normalize(target).map_err(|p| {
            path_problem(
                slot.path,
                p,
                "hard link target climbs above the layer root with `..`",
            )
        })?;
        let Some((tname, tparent)) = tcomps.split_last() else {
            return Err(escape(slot.path, "hard link to the layer root"));
        };
        let tdir = self
            .root
            .resolve_dir(tparent)
            .op("resolve hard link target directory")
            .map_err(|e| e.at(slot.path))?;
        let tst = lstat_at(tdir.as_fd(), tname)
            .op("inspect hard link target")
            .map_err(|e| e.at(slot.path))?
            .ok_or_else(|| UnpackError::Io {
                path: slot.path.to_owned(),
                op: "find hard link target",
                source: Errno::NOENT.into(),
            })?;
        if is_dir(&tst) {
            return Err(invalid(slot.path, "hard link to a directory"));
        }
        let existing = lstat_at(slot.parent(), slot.name)
            .op("inspect existing entry")
            .map_err(|e| e.at(slot.path))?;
        if existing.is_some_and(|st| Inode::of(&st) == Inode::of(&tst)) {
            return Ok(()); // already this inode (e.g. a link to itself)
        }
        self.clear(slot, false)?;
        rustix::fs::linkat(
            tdir.as_fd(),
            tname.as_slice(),
            slot.parent(),
            slot.name,
            AtFlags::empty(),
        )
        .op("create hard link")
        .map_err(|e| e.at(slot.path))?;
        self.stats.hardlinks += 1;
        Ok(())
    }

    /// `.wh.<target>`: a 0:0 character device named `<target>`, overlayfs's
    /// whiteout. The parent is resolved like any entry's (created if
    /// missing, as containerd does); nothing is ever deleted outside the
    /// slot itself.
    fn whiteout(
        &mut self,
        path: &Path,
        parent: &[Component],
        target: &[u8],
    ) -> Result<(), UnpackError> {
        if !is_valid_whiteout_target(target) {
            return Err(invalid(path, "whiteout names no file"));
        }
        let mut comps = parent.to_vec();
        comps.push(target.to_vec());
        let slot = Slot {
            path,
            comps: &comps,
            parent: self.parent_dir(parent).map_err(|e| e.at(path))?,
            name: target,
        };
        // A layer that both adds and deletes a name: the whiteout wins.
        self.clear(&slot, false)?;
        rustix::fs::mknodat(
            slot.parent(),
            target,
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .op("create whiteout device")
        .map_err(|e| e.at(path))?;
        self.stats.whiteouts += 1;
        Ok(())
    }

    /// `.wh..wh..opq`: the directory holding it is opaque; the xattr is
    /// required (without it lower layers would show through), so failing to
    /// set it is an error.
    fn opaque(&mut self, path: &Path, dir: &[Component]) -> Result<(), UnpackError> {
        let resolved = self.parent_dir(dir).map_err(|e| e.at(path))?;
        // The resolved fd is O_PATH; xattrs need a real open.
        let opened = rustix::fs::openat(
            &resolved,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .op("open opaque directory")
        .map_err(|e| e.at(path))?;
        fsops::set_xattr_fd(opened.as_fd(), OVERLAY_OPAQUE, b"y")
            .op("mark directory opaque")
            .map_err(|e| e.at(path))?;
        self.stats.opaque_dirs += 1;
        Ok(())
    }

    /// Owner and xattrs through an open file or directory.
    fn fd_metadata(
        &mut self,
        path: &Path,
        fd: BorrowedFd<'_>,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        if let Some((uid, gid)) = self.owner(meta) {
            rustix::fs::fchown(fd, Some(uid), Some(gid))
                .op("chown")
                .map_err(|e| e.at(path))?;
        }
        self.xattrs(path, meta, |name, value| {
            fsops::set_xattr_fd(fd, name, value)
        })
    }

    /// Owner, xattrs, mode (unless a symlink) and times of a node that is
    /// not opened, by (parent, name), never following the name.
    fn at_metadata(
        &mut self,
        slot: &Slot<'_>,
        meta: &Meta,
        chmod: bool,
    ) -> Result<(), UnpackError> {
        let (dir, name, path) = (slot.parent(), slot.name, slot.path);
        if let Some((uid, gid)) = self.owner(meta) {
            rustix::fs::chownat(dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
                .op("chown")
                .map_err(|e| e.at(path))?;
        }
        self.xattrs(path, meta, |xname, value| {
            fsops::set_xattr_at(dir, name, xname, value)
        })?;
        if chmod {
            fsops::chmod_nofollow(dir, name, meta.mode)
                .op("chmod")
                .map_err(|e| e.at(path))?;
        }
        fsops::set_times_at(dir, name, meta.mtime)
            .op("set times")
            .map_err(|e| e.at(path))
    }

    /// Sets the entry's xattrs with `set`. overlayfs metadata from an image
    /// is dropped (an image must not forge whiteouts, opaque dirs or
    /// redirects); a filesystem or a privilege level that refuses an xattr
    /// (EOPNOTSUPP, EPERM, e.g. `user.*` on a symlink) is logged and
    /// tolerated, anything else is an error.
    fn xattrs(
        &mut self,
        path: &Path,
        meta: &Meta,
        set: impl Fn(&[u8], &[u8]) -> io::Result<()>,
    ) -> Result<(), UnpackError> {
        for x in &meta.xattrs {
            let name = OsStr::from_bytes(&x.name);
            if is_overlay_xattr(&x.name) {
                tracing::debug!(path = ?path, xattr = ?name, "overlayfs xattr in image ignored");
                self.stats.xattrs_skipped += 1;
                continue;
            }
            match set(&x.name, &x.value) {
                Ok(()) => {}
                Err(e) if errno_is(&e, Errno::OPNOTSUPP) || errno_is(&e, Errno::PERM) => {
                    tracing::debug!(path = ?path, xattr = ?name, error = %e, "xattr not set");
                    self.stats.xattrs_skipped += 1;
                }
                Err(source) => {
                    return Err(UnpackError::Io {
                        path: path.to_owned(),
                        op: "set xattr",
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

/// overlayfs's own xattrs: `trusted.overlay.*`, and `user.overlay.*` used by
/// unprivileged (`userxattr`) mounts.
fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// Device numbers of a character or block device entry.
fn device_numbers(header: &tar::Header, path: &Path) -> Result<rustix::fs::Dev, UnpackError> {
    let major = header.device_major().ok().flatten();
    let minor = header.device_minor().ok().flatten();
    match (major, minor) {
        (Some(major), Some(minor)) => Ok(rustix::fs::makedev(major, minor)),
        _ => Err(invalid(path, "device entry without valid device numbers")),
    }
}
