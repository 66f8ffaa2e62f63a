//! The cgroup driver.

use serde::{Deserialize, Serialize};

/// How pod and container cgroups are named and created. kubelet must be
/// started with the same `--cgroup-driver`; `RuntimeConfig` reports this
/// value so kubelet can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    /// Cgroup directories written directly under the cgroup mounts.
    Cgroupfs,
    /// Slices and scopes owned by systemd (kubelet sends `*.slice` parents).
    Systemd,
}

impl CgroupDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupDriver::Cgroupfs => "cgroupfs",
            CgroupDriver::Systemd => "systemd",
        }
    }
}
