use serde::{Deserialize, Serialize};

pub use berth_cgroups::CgroupDriver;

/// `[pod]`: pod sandboxes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `cgroupfs` or `systemd`; must match kubelet's `--cgroup-driver`.
    pub cgroup_driver: CgroupDriver,
    /// Cgroup parent of pods whose config names none (pods run without
    /// kubelet, e.g. by `berth run`): a path with cgroupfs, a slice with
    /// systemd. Empty: `/berth`, or `berth.slice` with systemd.
    pub default_cgroup_parent: String,
    /// Size of each pod's /dev/shm (tmpfs) when it has its own IPC
    /// namespace, in MiB.
    pub shm_size_mib: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cgroup_driver: CgroupDriver::Cgroupfs,
            default_cgroup_parent: String::new(),
            shm_size_mib: 64,
        }
    }
}

impl Config {
    /// The cgroup parent for pods that name none.
    pub fn default_parent(&self) -> &str {
        match (self.default_cgroup_parent.as_str(), self.cgroup_driver) {
            ("", CgroupDriver::Cgroupfs) => "/berth",
            ("", CgroupDriver::Systemd) => "berth.slice",
            (p, _) => p,
        }
    }

    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let p = self.default_parent();
        match self.cgroup_driver {
            CgroupDriver::Cgroupfs if !p.starts_with('/') => Err((
                "default_cgroup_parent",
                format!("{p:?} must be an absolute cgroup path with the cgroupfs driver"),
            )),
            CgroupDriver::Systemd if !p.ends_with(".slice") => Err((
                "default_cgroup_parent",
                format!("{p:?} must be a *.slice with the systemd driver"),
            )),
            _ if self.shm_size_mib == 0 => Err(("shm_size_mib", "must be at least 1".into())),
            _ => Ok(()),
        }
    }
}
