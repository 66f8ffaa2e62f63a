//! Cgroups as berth uses them, for pods (berth-pod) and containers
//! (berth-containers) alike: which hierarchy the node runs (`detect`), how
//! each driver names a pod's and a container's cgroup (`path`), and
//! creating, filling and removing them on cgroup v1 (and hybrid) and v2
//! (`fs`).

mod detect;
mod driver;
mod fs;
mod path;

pub use detect::{Hierarchy, detect};
pub use driver::CgroupDriver;
pub use fs::Cgroups;
pub use path::{cgroup_dir, container_cgroup_path, pod_cgroup_path};
