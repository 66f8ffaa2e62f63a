//! Everything that can go wrong with an image, each variant saying what
//! and where; `berth-cri` maps them to gRPC codes.

use crate::content::ContentError;
use crate::digest::Digest;
use crate::hosts::HostsError;
use crate::reference::RefError;
use crate::unpack::UnpackError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference does not parse.
    #[error(transparent)]
    InvalidReference(#[from] RefError),
    /// No such image locally (ImageStatus/RemoveImage), or the registry has
    /// no such repository, tag, manifest or blob.
    #[error("{0}")]
    NotFound(String),
    /// The registry wants credentials we do not have, or rejected ours.
    #[error("registry {registry}: authentication required or failed: {message}")]
    Unauthenticated { registry: String, message: String },
    /// The credentials are valid but do not grant access.
    #[error("registry {registry}: access denied: {message}")]
    PermissionDenied { registry: String, message: String },
    /// The registry could not be reached (connection refused, DNS, TLS,
    /// timeout, 5xx).
    #[error("registry {registry} unreachable: {message}")]
    Unavailable { registry: String, message: String },
    /// A manifest, config or layer type berth cannot use.
    #[error("{0}")]
    Unsupported(String),
    /// Content did not match its digest: a corrupt or tampered download.
    #[error("{what} {digest}: content does not match its digest ({detail}); discarded")]
    DigestMismatch {
        what: &'static str,
        digest: Digest,
        detail: String,
    },
    /// A layer tried to write outside its directory or is malformed.
    #[error("layer {digest}: {source}")]
    BadLayer {
        digest: Digest,
        #[source]
        source: UnpackError,
    },
    /// The disk (or inode table) is full.
    #[error("no space left while storing {what}: {message}")]
    NoSpace { what: String, message: String },
    /// Registry configuration files are broken.
    #[error(transparent)]
    Config(#[from] HostsError),
    /// Local storage failed.
    #[error("image storage: {0}")]
    Storage(String),
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
}

impl From<ContentError> for ImageError {
    fn from(e: ContentError) -> Self {
        match e {
            ContentError::DigestMismatch { expected, actual } => ImageError::DigestMismatch {
                what: "blob",
                digest: expected,
                detail: format!("got {actual}"),
            },
            ContentError::SizeMismatch {
                digest,
                expected,
                actual,
            } => ImageError::DigestMismatch {
                what: "blob",
                digest,
                detail: format!("expected {expected} bytes, got {actual}"),
            },
            ContentError::Io { path, source } => io_error(&path.display().to_string(), &source),
        }
    }
}

/// Classifies an I/O error: a full disk is its own kind.
pub fn io_error(what: &str, e: &std::io::Error) -> ImageError {
    match e.raw_os_error() {
        Some(28) | Some(122) => ImageError::NoSpace {
            what: what.to_owned(),
            message: e.to_string(),
        },
        _ => ImageError::Storage(format!("{what}: {e}")),
    }
}
