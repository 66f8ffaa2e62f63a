//! What can go wrong while unpacking a layer. Every variant names the
//! offending entry (as written in the archive) so a bad layer can be
//! diagnosed from the error alone.

use std::io;
use std::path::PathBuf;

/// Why a layer could not be unpacked. After any of these the destination
/// directory is in an unspecified, partially written state and must be
/// deleted by the caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnpackError {
    /// The tar stream is unreadable, corrupt (bad checksum, malformed PAX
    /// record, truncated entry data) or the reader failed. When the failure
    /// happened inside an entry, the message names it.
    #[error("corrupt layer tar stream: {0}")]
    Tar(#[source] io::Error),

    /// A filesystem operation inside the destination failed. `op` says which
    /// (e.g. "create regular file"); `path` is the entry being applied, or
    /// the destination itself for "open destination directory".
    #[error("layer entry {path:?}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },

    /// An entry type berth does not unpack: GNU or PAX sparse files, tape
    /// volume headers, unknown type flags.
    #[error("layer entry {path:?}: unsupported entry type: {kind}")]
    UnsupportedEntry { path: PathBuf, kind: String },

    /// A hostile entry: its name or hard link target climbs above the layer
    /// root with `..`, or it would replace the layer root itself. Symlinks
    /// are never a reason for this error: they are resolved as if the layer
    /// root were `/`, so they cannot point outside it.
    #[error("layer entry {path:?} escapes the layer root: {reason}")]
    Escape { path: PathBuf, reason: &'static str },

    /// A malformed entry: NUL byte in a name, missing or empty link target,
    /// numeric field out of range, whiteout naming nothing.
    #[error("invalid layer entry {path:?}: {reason}")]
    Invalid { path: PathBuf, reason: &'static str },
}

/// A failed syscall and what it was for, before the entry path is known to
/// the caller; turned into [`UnpackError::Io`] by [`OpError::at`].
#[derive(Debug)]
pub(crate) struct OpError {
    pub(crate) op: &'static str,
    pub(crate) source: io::Error,
}

impl OpError {
    pub(crate) fn at(self, path: &std::path::Path) -> UnpackError {
        UnpackError::Io {
            path: path.to_owned(),
            op: self.op,
            source: self.source,
        }
    }
}

/// Attaches an operation name to any `std` or `rustix` I/O result.
pub(crate) trait OpContext<T> {
    fn op(self, op: &'static str) -> Result<T, OpError>;
}

impl<T, E: Into<io::Error>> OpContext<T> for Result<T, E> {
    fn op(self, op: &'static str) -> Result<T, OpError> {
        self.map_err(|e| OpError {
            op,
            source: e.into(),
        })
    }
}
