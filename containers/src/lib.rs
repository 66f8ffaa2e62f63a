//! Containers: the lifecycle over the per-pod `berth-shim` (which runs the
//! OCI runtime and holds the containers' stdio), overlay rootfs, OCI bundle
//! (spec from `berth-spec`), logs and exec.

pub mod config;
pub mod containers;
pub mod error;
pub mod record;
pub mod rootfs;
pub mod sealed;
pub mod shim;

pub use config::{Config, Handler};
pub use containers::{
    ContainerFilter, Containers, CreateRequest, ExecOutput, ImageInfo, Paths, Removal, SandboxView,
};
pub use error::RuntimeError;
pub use record::{ContainerRecord, ImageRef, State};
