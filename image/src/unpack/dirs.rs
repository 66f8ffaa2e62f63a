//! Directory mode and mtime, applied after the whole layer is written.
//!
//! Creating an entry inside a directory changes the directory's mtime, so
//! mtimes can only be final at the end. Modes are deferred too: a read-only
//! directory (0555) must still accept the rest of its contents when berth
//! runs without `CAP_DAC_OVERRIDE`.
//!
//! A record is keyed by the directory's (dev, inode), so repeated entries
//! for one directory (also under different names, through symlinks) keep
//! only the last metadata, and removing a directory drops its records even
//! if a new one later reuses the inode number. It also remembers the path
//! the directory was reached by: at the end that path is resolved again
//! (IN_ROOT, final component never followed) and the record applies only if
//! it still names the same inode. A directory that a layer made reachable
//! only through a symlink it later re-pointed is skipped and keeps mode
//! 0700 (no image builder writes entries through symlinks).

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::{Mode, Timespec};
use rustix::io::Errno;

use super::error::{OpContext, OpError, UnpackError};
use super::fsops::{Inode, open_dir, timestamps};
use super::path::{Component, join};
use super::resolve::Root;

#[derive(Debug)]
struct DirMeta {
    comps: Vec<Component>,
    mode: u32,
    mtime: Timespec,
}

/// Directories whose metadata is still to be applied.
#[derive(Debug, Default)]
pub(crate) struct DeferredDirs {
    dirs: HashMap<Inode, DirMeta>,
}

impl DeferredDirs {
    /// Records (or replaces, for a repeated entry) a directory's metadata.
    pub(crate) fn record(&mut self, inode: Inode, comps: &[Component], mode: u32, mtime: Timespec) {
        let comps = comps.to_vec();
        self.dirs.insert(inode, DirMeta { comps, mode, mtime });
    }

    /// Forgets removed directories.
    pub(crate) fn forget(&mut self, removed: &[Inode]) {
        for inode in removed {
            self.dirs.remove(inode);
        }
    }

    /// Applies all records, deepest first (a parent's mode could otherwise
    /// stop us from reaching its children): in reverse lexicographic order
    /// of components every directory comes after its descendants.
    pub(crate) fn apply(self, root: &Root) -> Result<(), UnpackError> {
        let mut dirs: Vec<(Inode, DirMeta)> = self.dirs.into_iter().collect();
        dirs.sort_by(|a, b| b.1.comps.cmp(&a.1.comps));
        for (inode, meta) in &dirs {
            apply_one(root, *inode, meta).map_err(|e| {
                let path = PathBuf::from(std::ffi::OsStr::from_bytes(&join(&meta.comps)));
                e.at(&path)
            })?;
        }
        Ok(())
    }
}

/// Errors that mean "this path no longer names a directory": skip.
fn is_gone(e: Errno) -> bool {
    matches!(e, Errno::NOENT | Errno::NOTDIR | Errno::LOOP)
}

fn apply_one(root: &Root, inode: Inode, meta: &DirMeta) -> Result<(), OpError> {
    let comps = &meta.comps;
    let Some((name, parent)) = comps.split_last() else {
        return Ok(()); // the root itself is never recorded
    };
    let parent = match root.resolve_dir(parent) {
        Err(e) if is_gone(e) => return Ok(()),
        other => other.op("resolve directory for final metadata")?,
    };
    let dir = match open_dir(parent.as_fd(), name) {
        Err(e) if is_gone(e) => return Ok(()),
        other => other.op("open directory for final metadata")?,
    };
    let st = rustix::fs::fstat(&dir).op("stat directory")?;
    if Inode::of(&st) != inode {
        tracing::debug!(path = ?std::ffi::OsStr::from_bytes(&join(comps)), "directory replaced; its metadata is not applied");
        return Ok(());
    }
    rustix::fs::fchmod(&dir, Mode::from_raw_mode(meta.mode)).op("chmod directory")?;
    rustix::fs::futimens(&dir, &timestamps(meta.mtime)).op("set directory times")?;
    Ok(())
}
