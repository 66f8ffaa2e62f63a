//! Pod sandboxes. What is here now: the `[pod]` config section (the cgroup
//! driver kubelet must agree with) and detection of the node's cgroup
//! hierarchy. Sandboxes themselves land with the pods issue.

pub mod cgroup;
mod config;

pub use config::{CgroupDriver, Config};
