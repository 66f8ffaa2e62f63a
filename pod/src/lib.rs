//! Pod sandboxes: namespaces pinned without an infra container, pod
//! cgroups for both drivers and both cgroup versions, the pod's hostname,
//! hosts and resolv.conf files, and the sandbox state machine.

mod config;
pub mod error;
pub mod files;
pub mod hostports;
pub mod kernel;
pub mod ns;
pub mod pidns;
pub mod pods;
pub mod spec;
pub mod sysctl;
pub mod userns;

pub use config::{CgroupDriver, Config};
pub use error::{NetworkError, PodError};
pub use pods::{Dirs, NetRequest, PodFilter, PodNetwork, Pods};
pub use spec::*;
