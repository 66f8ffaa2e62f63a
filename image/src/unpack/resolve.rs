//! Resolving directories inside the layer root, the security boundary.
//!
//! Every directory is looked up with `openat2(root_fd, path,
//! RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: the kernel resolves the path
//! as if `root_fd` were `/` (chroot-like), so symlinks created by earlier
//! entries (`a -> /etc`, `a -> ../../..`) are followed but can only ever
//! land inside the root, and `/proc` magic links are refused. Only
//! directories are resolved this way; the final component of an entry is
//! always handled by the caller with `*at()` calls that never follow it.
//!
//! `RESOLVE_BENEATH` would also be safe, but it rejects legitimate layers
//! that go through absolute symlinks (`lib -> /usr/lib`), which IN_ROOT
//! resolves exactly as the container will see them.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{CWD, Gid, Mode, OFlags, ResolveFlags, Uid};
use rustix::io::Errno;

use super::error::{OpContext, OpError};
use super::path::{Component, join};

/// How directories are resolved (see the module docs).
const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// `openat2` fails with EAGAIN when a rename raced with resolving `..`;
/// nothing else writes into the root, so a few retries always suffice.
const EAGAIN_RETRIES: usize = 8;

/// Mode of directories created because an entry needs them as parents
/// (containerd's choice).
const IMPLICIT_DIR_MODE: u32 = 0o755;

/// The layer root: an open directory all lookups start from.
#[derive(Debug)]
pub(crate) struct Root {
    fd: OwnedFd,
}

impl Root {
    /// Opens `dest`. The caller's path is trusted (it is berth's own
    /// snapshot directory), so following symlinks in it is fine.
    pub(crate) fn open(dest: &Path) -> io::Result<Self> {
        let fd = rustix::fs::openat(
            CWD,
            dest,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self { fd })
    }

    /// Resolves an existing directory (an `O_PATH` fd, usable as the dirfd of
    /// `*at()` calls). The empty list is the root itself.
    pub(crate) fn resolve_dir(&self, comps: &[Component]) -> Result<OwnedFd, Errno> {
        let path = join(comps);
        let mut attempts = 0;
        loop {
            match rustix::fs::openat2(
                &self.fd,
                path.as_slice(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                RESOLVE,
            ) {
                Err(Errno::AGAIN) if attempts < EAGAIN_RETRIES => attempts += 1,
                other => return other,
            }
        }
    }

    /// Resolves a directory, creating missing components (mode 0755, owned
    /// by `owner` when given) the way `mkdir -p` would, but one component at
    /// a time relative to an already-resolved fd, so a creation can never be
    /// redirected.
    pub(crate) fn ensure_dir(
        &self,
        comps: &[Component],
        owner: Option<(Uid, Gid)>,
    ) -> Result<OwnedFd, OpError> {
        // Fast path: the parent usually exists already.
        match self.resolve_dir(comps) {
            Err(Errno::NOENT) => {}
            other => return other.op("resolve parent directory"),
        }
        let mut cur = self.resolve_dir(&[]).op("resolve parent directory")?;
        let mut creating = false;
        for (i, name) in comps.iter().enumerate() {
            if !creating {
                match self.resolve_dir(&comps[..=i]) {
                    Ok(fd) => {
                        cur = fd;
                        continue;
                    }
                    Err(Errno::NOENT) => {}
                    Err(e) => return Err(e).op("resolve parent directory"),
                }
            }
            // `name` does not resolve inside `cur`: it is missing, or a
            // dangling symlink (then mkdirat fails with EEXIST: we do not
            // create directories at a symlink's target).
            cur = make_implicit_dir(&cur, name, owner)?;
            // Everything below a directory we just created is missing too.
            creating = true;
        }
        Ok(cur)
    }
}

/// Creates `name` in `parent` as an implicit parent directory and returns it
/// opened (never following a symlink).
fn make_implicit_dir(
    parent: &OwnedFd,
    name: &Component,
    owner: Option<(Uid, Gid)>,
) -> Result<OwnedFd, OpError> {
    match rustix::fs::mkdirat(parent, name.as_slice(), Mode::from_raw_mode(0o700)) {
        Ok(()) => {}
        // `name` exists but did not resolve to a directory: a dangling
        // symlink. Directories are not created at a symlink's target.
        Err(Errno::EXIST) => {
            return Err(Errno::NOENT)
                .op("create parent directory: a dangling symlink is in the way");
        }
        Err(e) => return Err(e).op("create parent directory"),
    }
    let dir = rustix::fs::openat(
        parent,
        name.as_slice(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .op("open created parent directory")?;
    if let Some((uid, gid)) = owner {
        rustix::fs::fchown(&dir, Some(uid), Some(gid)).op("chown created parent directory")?;
    }
    // Explicit chmod: mkdirat's mode is filtered by the process umask.
    rustix::fs::fchmod(&dir, Mode::from_raw_mode(IMPLICIT_DIR_MODE))
        .op("chmod created parent directory")?;
    Ok(dir)
}
