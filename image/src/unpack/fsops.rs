//! Filesystem primitives on a (resolved directory fd, single component)
//! pair. The component comes from `path::normalize`, so it contains no `/`
//! and is never `.` or `..`; none of these functions follows a symlink in
//! it: an existing symlink is inspected, replaced or changed itself, never
//! its target.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

/// `lstat` of `name` in `dir`; `None` when nothing is there.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Identity of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Inode {
    dev: u64,
    ino: u64,
}

impl Inode {
    pub(crate) fn of(st: &Stat) -> Self {
        Self {
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

pub(crate) fn is_dir(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

/// Opens the directory `name` in `dir` for metadata changes; fails (ELOOP or
/// ENOTDIR) if it is a symlink or not a directory.
pub(crate) fn open_dir(dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Removes whatever `name` is (`st` is its lstat); a directory goes with its
/// whole subtree. Symlinks are unlinked, never followed. Returns the
/// directories removed.
pub(crate) fn remove(dir: BorrowedFd<'_>, name: &[u8], st: &Stat) -> io::Result<Vec<Inode>> {
    if is_dir(st) {
        remove_tree(dir, name)
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
        Ok(Vec::new())
    }
}

/// Removes the directory `name` in `parent` and everything below it,
/// depth-first with an explicit stack (a hostile layer can nest directories
/// deeper than a thread's stack would allow recursion for).
fn remove_tree(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<Inode>> {
    let mut removed = Vec::new();
    let mut stack: Vec<(OwnedFd, Vec<u8>)> = vec![(open_dir(parent, name)?, name.to_vec())];
    loop {
        let Some((dir, _)) = stack.last() else {
            return Ok(removed);
        };
        if let Some(sub) = unlink_all_but_one_subdir(dir.as_fd())? {
            let fd = open_dir(dir.as_fd(), &sub)?;
            stack.push((fd, sub));
            continue;
        }
        // `dir` is empty now: remove it from its parent.
        let Some((emptied_fd, emptied)) = stack.pop() else {
            return Ok(removed);
        };
        removed.push(Inode::of(&rustix::fs::fstat(&emptied_fd)?));
        let up = stack.last().map_or(parent, |(fd, _)| fd.as_fd());
        rustix::fs::unlinkat(up, emptied.as_slice(), AtFlags::REMOVEDIR)?;
    }
}

/// Unlinks the non-directories in `dir` until it finds a subdirectory, whose
/// name it returns; `None` when `dir` is now empty.
fn unlink_all_but_one_subdir(dir: BorrowedFd<'_>) -> io::Result<Option<Vec<u8>>> {
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let subdir = match entry.file_type() {
            FileType::Directory => true,
            FileType::Unknown => lstat_at(dir, name)?.is_some_and(|st| is_dir(&st)),
            _ => false,
        };
        if subdir {
            return Ok(Some(name.to_vec()));
        }
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
    }
    Ok(None)
}

/// Sets an xattr through an open file or directory.
pub(crate) fn set_xattr_fd(fd: BorrowedFd<'_>, xname: &[u8], value: &[u8]) -> io::Result<()> {
    Ok(rustix::fs::fsetxattr(
        fd,
        xname,
        value,
        XattrFlags::empty(),
    )?)
}

/// Sets an xattr on `name` in `dir` without following it, for nodes that
/// cannot be opened for writing (symlinks, devices, FIFOs).
///
/// Linux (before 6.13's `setxattrat`) has no dirfd-relative xattr call, so
/// the path is `/proc/thread-self/fd/<dir>/<name>` with `lsetxattr`: the
/// procfs magic link `<dir>` is our own, already-resolved directory fd, and
/// `name` is a single component that `lsetxattr` does not follow. Needs
/// procfs mounted at `/proc` (only for images with xattrs on such nodes).
pub(crate) fn set_xattr_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    xname: &[u8],
    value: &[u8],
) -> io::Result<()> {
    let mut path = format!("/proc/thread-self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name);
    Ok(rustix::fs::lsetxattr(
        path.as_slice(),
        xname,
        value,
        XattrFlags::empty(),
    )?)
}

/// `fchmodat(dir, name, mode, AT_SYMLINK_NOFOLLOW)` for devices and FIFOs,
/// which cannot be opened to `fchmod`. rustix refuses the flag on Linux;
/// glibc implements it race-free (`O_PATH|O_NOFOLLOW` open, refuse a
/// symlink, chmod through `/proc/self/fd`, or `fchmodat2` on new kernels).
pub(crate) fn chmod_nofollow(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<()> {
    nix::sys::stat::fchmodat(
        dir,
        name,
        nix::sys::stat::Mode::from_bits_truncate(mode),
        nix::sys::stat::FchmodatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

/// Access and modification time both set to the entry's mtime (tar headers
/// carry no reliable atime).
pub(crate) fn timestamps(mtime: Timespec) -> Timestamps {
    Timestamps {
        last_access: mtime,
        last_modification: mtime,
    }
}

/// Sets the times of `name` in `dir` itself (a symlink is not followed).
pub(crate) fn set_times_at(dir: BorrowedFd<'_>, name: &[u8], mtime: Timespec) -> io::Result<()> {
    Ok(rustix::fs::utimensat(
        dir,
        name,
        &timestamps(mtime),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}
