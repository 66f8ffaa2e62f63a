//! Image metadata in the store: images, the references naming them, and
//! the snapshots (unpacked layers) they use.

use berth_store::Table;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// One image, keyed by its id: the digest of its config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: Digest,
    /// `name:tag` references to it.
    #[serde(default)]
    pub repo_tags: Vec<String>,
    /// `name@manifest-digest` references to it.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// The platform manifest.
    pub manifest: Digest,
    /// The index it was chosen from, if any.
    #[serde(default)]
    pub index: Option<Digest>,
    pub layers: Vec<LayerRecord>,
    /// Bytes of config and layer blobs (what the registry served).
    pub size: u64,
    /// The image config's `User`.
    #[serde(default)]
    pub user: String,
    pub platform: String,
    /// Seconds since the epoch.
    pub stored_at: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub diff_id: Digest,
    pub chain_id: Digest,
}

/// An unpacked layer: `<root>/snapshots/<chain-id hex>/fs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub chain_id: Digest,
    pub parent: Option<Digest>,
    pub diff_id: Digest,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    /// Entries created.
    pub inodes: u64,
}

pub const IMAGES: Table<ImageRecord> = Table::new("images");
/// Normalized reference (`name:tag` or `name@digest`) → image id.
pub const REFS: Table<Digest> = Table::new("image_refs");
pub const SNAPSHOTS: Table<SnapshotRecord> = Table::new("snapshots");

/// Snapshot leases: holder (a container) → the chain IDs it runs on.
/// Garbage collection never removes a leased snapshot, also after the image
/// that brought it was removed.
pub const LEASES: Table<Vec<Digest>> = Table::new("image_leases");
