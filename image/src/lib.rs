//! Images: registry pull, content store, layer unpack, overlay snapshots,
//! image metadata, GC and offline import.
//!
//! On disk, under the daemon's root dir:
//! - `content/blobs/sha256/<hex>`: verified blobs (manifests, configs,
//!   compressed layers); `content/ingest/` while writing.
//! - `snapshots/<chain-id hex>/fs`: each layer unpacked once per chain ID,
//!   in overlay form (whiteouts as 0:0 devices, opaque dirs as xattrs);
//!   `snapshots/.ingest/` while unpacking.
//! - metadata in the store: tables `images`, `image_refs`, `snapshots`.

pub mod config;
pub mod content;
pub mod credhelper;
pub mod creds;
pub mod digest;
pub mod error;
pub mod hosts;
mod images;
mod import;
mod layer;
mod locks;
pub mod manifest;
pub mod meta;
pub mod progress;
mod pull;
pub mod reference;
mod remote;
pub mod snapshot;
pub mod unpack;

pub use config::Config;
pub use creds::AuthFields;
pub use digest::Digest;
pub use error::ImageError;
pub use images::{FsUsage, Images, PullCounters};
pub use meta::ImageRecord;
pub use progress::{Progress, PullEvent};
pub use reference::ImageRef;
