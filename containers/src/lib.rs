//! berthd's containers: the CRI container lifecycle over the per-pod
//! `berth-shim` (which runs the OCI runtime and holds the containers'
//! stdio), overlay rootfs, OCI bundle (spec from `berth-spec`), logs and
//! exec.
//!
//! One module per operation on the shared `Containers` handle
//! (`service`): `create`, `start_stop` (and exits), `remove`, `exec`,
//! `update`, `recover`, `stream` (streaming exec and attach); beside them the records (`record`), the rootfs
//! (`rootfs`, with `idmap` for user-namespaced pods and
//! `image_volumes` for mounts of images), the shim client (`shim`), the runtime handlers' sealed
//! copies (`sealed`) and the config.

pub mod config;
pub mod counters;
mod create;
pub mod error;
pub mod events;
mod exec;
pub mod idmap;
mod image_volumes;
pub mod record;
mod recover;
mod remove;
pub mod rootfs;
pub mod sealed;
mod service;
pub mod shim;
mod start_stop;
pub mod stream;
mod update;

pub use config::{Config, Handler};
pub use create::{CreateRequest, ImageInfo, PodUserNs, SandboxView, resolve_log_path};
pub use error::RuntimeError;
pub use exec::ExecOutput;
pub use image_volumes::{ImageVolume, is_image_volume, with_image_volumes};
pub use record::{ContainerRecord, ImageRef, State};
pub use remove::Removal;
pub use service::{ContainerFilter, Containers, Paths};
pub use stream::{AsyncStdio, AttachSession, ExecControl, ExecSession, Stream, resize};
