//! What spec generation needs to know about the host it runs on.
//!
//! [`Host::detect`] probes once (cached by [`crate::generate`]); tests and
//! callers that want determinism build a [`Host`] by hand and use
//! [`crate::generate_with`].

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use oci_spec::runtime::Capability;

use crate::caps;

/// Facts about the host that change the generated spec.
#[derive(Debug, Clone)]
pub struct Host {
    /// cgroup v2 (unified) hierarchy at /sys/fs/cgroup: containers get a
    /// cgroup namespace (unless privileged), as containerd does.
    pub cgroup2: bool,
    /// The memory controller accounts swap (memory.swap.max /
    /// memory.memsw.limit_in_bytes exists): only then is `memory.swap` set.
    pub swap_available: bool,
    /// The capabilities berthd holds (its effective set): what "ALL" and
    /// privileged mean, as containerd's `cap.Current()`.
    pub capabilities: Vec<Capability>,
    /// AppArmor is enabled in the kernel.
    pub apparmor_enabled: bool,
    /// Kernel version (major, minor), for seccomp `minKernel` conditions.
    pub kernel: (u32, u32),
    /// Where host devices are listed for privileged containers (`/dev`).
    pub dev_dir: PathBuf,
    /// Override for /proc/self/mountinfo (tests); `None` reads the real one.
    pub mountinfo: Option<String>,
    /// Override for /sys/kernel/security/apparmor/profiles (tests).
    pub apparmor_profiles: Option<String>,
}

impl Host {
    /// Probes the running host.
    pub fn detect() -> Host {
        let cgroup2 = detect_cgroup2();
        Host {
            cgroup2,
            swap_available: detect_swap(cgroup2),
            capabilities: caps::current().unwrap_or_else(|| caps::all_known().to_vec()),
            apparmor_enabled: std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
                .map(|s| s.trim().starts_with('Y'))
                .unwrap_or(false),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .and_then(|s| parse_kernel_version(&s))
                .unwrap_or((0, 0)),
            dev_dir: PathBuf::from("/dev"),
            mountinfo: None,
            apparmor_profiles: None,
        }
    }

    /// The probed host, detected once per process.
    pub fn cached() -> &'static Host {
        static HOST: OnceLock<Host> = OnceLock::new();
        HOST.get_or_init(Host::detect)
    }

    pub(crate) fn mountinfo(&self) -> Result<String, std::io::Error> {
        match &self.mountinfo {
            Some(m) => Ok(m.clone()),
            None => std::fs::read_to_string("/proc/self/mountinfo"),
        }
    }

    pub(crate) fn apparmor_profiles(&self) -> Result<String, std::io::Error> {
        match &self.apparmor_profiles {
            Some(p) => Ok(p.clone()),
            None => std::fs::read_to_string("/sys/kernel/security/apparmor/profiles"),
        }
    }
}

/// "6.8.0-45-generic" → (6, 8).
pub(crate) fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()
        .and_then(|m| {
            let digits: String = m.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or(0);
    Some((major, minor))
}

fn detect_cgroup2() -> bool {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    match rustix::fs::statfs("/sys/fs/cgroup") {
        #[allow(clippy::unnecessary_cast)] // f_type's width differs by arch
        Ok(st) => st.f_type as i64 == CGROUP2_SUPER_MAGIC,
        Err(_) => Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
    }
}

fn detect_swap(cgroup2: bool) -> bool {
    if !cgroup2 {
        return Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
    }
    // memory.swap.max does not exist in the root cgroup: look in our own.
    let Ok(own) = std::fs::read_to_string("/proc/self/cgroup") else {
        return false;
    };
    let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
        return false;
    };
    let root = Path::new("/sys/fs/cgroup");
    let dir = root.join(path.trim_start_matches('/'));
    if dir.join("memory.swap.max").exists()
        || dir
            .parent()
            .is_some_and(|p| p.join("memory.swap.max").exists())
    {
        return true;
    }
    // In the root cgroup (no memory.swap.max there): any child cgroup tells.
    std::fs::read_dir(root).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.path().join("memory.swap.max").exists())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.8.0-45-generic\n"), Some((6, 8)));
        assert_eq!(parse_kernel_version("4.19.128+"), Some((4, 19)));
        assert_eq!(parse_kernel_version("5.4"), Some((5, 4)));
        assert_eq!(parse_kernel_version("5.15rc1"), Some((5, 15)));
        assert_eq!(parse_kernel_version("x"), None);
    }
}
