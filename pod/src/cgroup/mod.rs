//! Pod cgroups, under the cgroup parent kubelet gives (or berth's default),
//! with either driver, on cgroup v1 (and hybrid) and v2.

mod detect;
mod fs;
mod path;

pub use detect::{Hierarchy, detect};
pub use fs::Cgroups;
pub use path::pod_cgroup_path;
