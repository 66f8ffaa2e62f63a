//! Layer unpacking: one OCI layer tar stream into one overlayfs lower
//! directory (a snapshot), whiteouts converted to overlay form.
//!
//! # Threat model
//!
//! The tar stream is untrusted (a registry or an image author controls it;
//! its digest only proves it is the layer the manifest names). It must not
//! create, modify, chmod, chown or delete anything outside `dest`, whatever
//! its names, symlinks, hard links or whiteouts say. `dest` itself is
//! trusted and private: nobody else writes into it while we unpack.
//!
//! How that holds (details in the submodules):
//! - names are normalized lexically: a leading `/` is ignored, `.` and empty
//!   components dropped, `..` removes a component; a `..` that would climb
//!   above the root is rejected as [`UnpackError::Escape`] (`path.rs`);
//! - every parent directory is resolved from one fd on `dest` with
//!   `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: symlinks made by
//!   earlier entries are followed as if `dest` were `/`, so they always land
//!   inside it (`a -> /etc` then `a/passwd` writes `dest/etc/passwd`), exactly
//!   as the container will see them. Such entries are confined, not errors
//!   (`resolve.rs`);
//! - the final component is created relative to that parent fd with `*at()`
//!   calls that never follow it; an existing entry of that name is removed
//!   first (directories merge), so a symlink planted there is replaced, never
//!   written through, chmodded or chowned (`apply.rs`, `fsops.rs`);
//! - hard link targets follow the same rules and are linked with `linkat`
//!   between fds, without `AT_SYMLINK_FOLLOW`;
//! - whiteouts become 0:0 character devices and opaque markers the
//!   `trusted.overlay.opaque` xattr, created like any entry; nothing is ever
//!   deleted except an entry's own slot inside `dest`. `trusted.overlay.*`
//!   and `user.overlay.*` xattrs in the image are dropped.
//!
//! Resource limits: file data is streamed through a fixed buffer; the
//! headers and PAX/GNU extension records before each entry, which the tar
//! crate buffers whole, are capped at 16 MiB (`budget.rs`). Disk usage and
//! entry counts are not limited here.
//!
//! Layer semantics follow containerd's overlay applier: a later entry
//! replaces an earlier one of the same name, missing parents are created
//! (0755, root-owned), a directory entry for the root itself is ignored,
//! directory modes and mtimes are applied once the whole layer is written.

mod apply;
mod budget;
mod dirs;
mod error;
mod fsops;
mod meta;
mod path;
mod resolve;
#[cfg(test)]
mod tests;

use std::io::Read;
use std::path::Path;

pub use error::UnpackError;

/// How to unpack.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnpackOptions {
    /// Give entries the uid/gid their headers say. Needs `CAP_CHOWN`; when
    /// false, everything is owned by the unpacking process.
    pub preserve_ownership: bool,
}

impl Default for UnpackOptions {
    /// Preserves ownership when running as root.
    fn default() -> Self {
        Self {
            preserve_ownership: rustix::process::geteuid().is_root(),
        }
    }
}

impl UnpackOptions {
    /// Sets [`UnpackOptions::preserve_ownership`].
    #[must_use]
    pub fn preserve_ownership(mut self, preserve: bool) -> Self {
        self.preserve_ownership = preserve;
        self
    }
}

/// What one unpack wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnpackStats {
    /// Tar entries applied, whiteouts and opaque markers included (PAX and
    /// GNU extension headers are not entries).
    pub entries: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Character and block devices.
    pub devices: u64,
    pub fifos: u64,
    /// Whiteouts written as 0:0 character devices.
    pub whiteouts: u64,
    /// Directories marked opaque.
    pub opaque_dirs: u64,
    /// Xattrs not set: overlayfs ones from the image, or ones the
    /// filesystem refused (EOPNOTSUPP/EPERM).
    pub xattrs_skipped: u64,
}

/// Unpacks one layer into `dest`, converting whiteouts to overlayfs form.
///
/// `tar` is the already decompressed layer; it is read up to the
/// end-of-archive marker, not beyond (a caller hashing the stream drains the
/// rest). `dest` must be an existing directory, normally empty, private to
/// this call; it becomes one overlayfs lower dir.
///
/// On error, `dest` is left partially written and must be deleted by the
/// caller: unpack into a temporary directory and rename it into place only
/// on success. See the module docs for what an untrusted layer cannot do.
///
/// Blocking (filesystem syscalls throughout): call it from a blocking
/// thread, not an async task.
pub fn unpack_layer<R: Read>(
    tar: R,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let root = resolve::Root::open(dest).map_err(|source| UnpackError::Io {
        path: dest.to_owned(),
        op: "open destination directory",
        source,
    })?;
    let mut unpacker = apply::Unpacker::new(root, opts);
    let budget = budget::Budget::default();
    let mut archive = tar::Archive::new(budget::Budgeted::new(tar, budget.clone()));
    let mut entries = archive.entries().map_err(UnpackError::Tar)?;
    loop {
        // Headers and extension records are read (and buffered) under a
        // cap; entry data is streamed without one.
        budget.cap();
        let Some(entry) = entries.next() else {
            break;
        };
        let entry = entry.map_err(UnpackError::Tar)?;
        budget.lift();
        unpacker.apply(entry)?;
    }
    let stats = unpacker.finish()?;
    tracing::debug!(dest = %dest.display(), ?stats, "layer unpacked");
    Ok(stats)
}
