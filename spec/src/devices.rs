//! Devices and the device cgroup.
//!
//! As containerd 1.7: a CRI device's host path is resolved (symlinks), must be
//! a character or block device (a directory adds every device below it), and
//! becomes a `linux.devices` entry (host owner and mode) plus a cgroup allow
//! rule with its permissions. The device cgroup starts with deny-all and the
//! standard allows (mknod anything; null, zero, full, random, urandom, tty,
//! console, ptmx, pts, tun). Privileged containers get every host device
//! under /dev and an allow-all rule.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_cri::v1::ContainerConfig;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::SpecError;
use crate::host::Host;

#[derive(Debug, Default)]
pub(crate) struct Devices {
    pub devices: Vec<LinuxDevice>,
    pub cgroup: Vec<LinuxDeviceCgroup>,
}

fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(Some(typ));
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.into()));
    r
}

/// Deny all, then the devices every container may use.
pub(crate) fn default_cgroup_rules() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{A, B, C};
    vec![
        rule(false, A, None, None, "rwm"),
        rule(true, C, None, None, "m"),
        rule(true, B, None, None, "m"),
        rule(true, C, Some(1), Some(3), "rwm"),    // /dev/null
        rule(true, C, Some(1), Some(8), "rwm"),    // /dev/random
        rule(true, C, Some(1), Some(7), "rwm"),    // /dev/full
        rule(true, C, Some(5), Some(0), "rwm"),    // /dev/tty
        rule(true, C, Some(1), Some(5), "rwm"),    // /dev/zero
        rule(true, C, Some(1), Some(9), "rwm"),    // /dev/urandom
        rule(true, C, Some(5), Some(1), "rwm"),    // /dev/console
        rule(true, C, Some(136), None, "rwm"),     // /dev/pts/*
        rule(true, C, Some(5), Some(2), "rwm"),    // /dev/ptmx
        rule(true, C, Some(10), Some(200), "rwm"), // /dev/net/tun
    ]
}

/// The devices and device cgroup rules of a container.
pub(crate) fn devices(
    config: &ContainerConfig,
    privileged: bool,
    host: &Host,
) -> Result<Devices, SpecError> {
    if privileged {
        return Ok(Devices {
            devices: host_devices(&host.dev_dir)?,
            cgroup: vec![rule(true, LinuxDeviceType::A, None, None, "rwm")],
        });
    }
    if !config.cdi_devices.is_empty() {
        return Err(SpecError::Unsupported(format!(
            "CDI devices ({})",
            config
                .cdi_devices
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut out = Devices {
        devices: Vec::new(),
        cgroup: default_cgroup_rules(),
    };
    for d in &config.devices {
        let host_path = PathBuf::from(&d.host_path);
        let permissions = if d.permissions.is_empty() {
            "rwm".to_string()
        } else {
            d.permissions.clone()
        };
        if !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) || permissions.len() > 3 {
            return Err(SpecError::InvalidDevicePermissions {
                path: host_path,
                permissions,
            });
        }
        let container_path = if d.container_path.is_empty() {
            d.host_path.clone()
        } else {
            d.container_path.clone()
        };
        if !container_path.starts_with('/') {
            return Err(SpecError::InvalidMount {
                container_path,
                reason: "a device's container path must be absolute".into(),
            });
        }
        for dev in devices_at(&host_path, Path::new(&container_path))? {
            out.cgroup.push(rule(
                true,
                dev.typ(),
                Some(dev.major()),
                Some(dev.minor()),
                &permissions,
            ));
            out.devices.push(dev);
        }
    }
    Ok(out)
}

/// The device at `host_path` (symlinks resolved), or every device below it
/// when it is a directory, placed at `container_path`.
fn devices_at(host_path: &Path, container_path: &Path) -> Result<Vec<LinuxDevice>, SpecError> {
    let real = match std::fs::canonicalize(host_path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SpecError::DeviceMissing(host_path.into()));
        }
        Err(e) => {
            return Err(SpecError::io(
                format!("resolving device {}", host_path.display()),
                e,
            ));
        }
    };
    let meta = std::fs::metadata(&real)
        .map_err(|e| SpecError::io(format!("stat device {}", real.display()), e))?;
    if meta.is_dir() {
        let mut out = Vec::new();
        walk(&real, container_path, &mut out)?;
        return Ok(out);
    }
    device_from(&meta, container_path)
        .ok_or_else(|| SpecError::NotADevice(host_path.into()))
        .map(|d| vec![d])
}

fn device_from(meta: &std::fs::Metadata, container_path: &Path) -> Option<LinuxDevice> {
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return None;
    };
    let rdev = meta.rdev();
    let mut d = LinuxDevice::default();
    d.set_path(container_path.to_path_buf());
    d.set_typ(typ);
    d.set_major(i64::from(rustix::fs::major(rdev)));
    d.set_minor(i64::from(rustix::fs::minor(rdev)));
    d.set_file_mode(Some(meta.permissions().mode() & 0o7777));
    d.set_uid(Some(meta.uid()));
    d.set_gid(Some(meta.gid()));
    Some(d)
}

/// Directories of /dev that hold no devices to pass on (containerd's list).
const SKIPPED_DIRS: &[&str] = &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

fn walk(dir: &Path, container_dir: &Path, out: &mut Vec<LinuxDevice>) -> Result<(), SpecError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| SpecError::io(format!("listing {}", dir.display()), e))?;
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let path = e.path();
        let cpath = container_dir.join(&name);
        // lstat: symlinks are not devices.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if SKIPPED_DIRS.iter().any(|s| name == *s) {
                continue;
            }
            walk(&path, &cpath, out)?;
            continue;
        }
        if name == "console" {
            continue;
        }
        if let Some(d) = device_from(&meta, &cpath) {
            out.push(d);
        }
    }
    Ok(())
}

/// Every device under the host's /dev, at the same path in the container.
fn host_devices(dev: &Path) -> Result<Vec<LinuxDevice>, SpecError> {
    let mut out = Vec::new();
    walk(dev, Path::new("/dev"), &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::host;
    use k8s_cri::v1::Device;

    fn dev(host: &str, container: &str, perms: &str) -> ContainerConfig {
        ContainerConfig {
            devices: vec![Device {
                host_path: host.into(),
                container_path: container.into(),
                permissions: perms.into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn default_rules_deny_then_allow() {
        let d = devices(&ContainerConfig::default(), false, &host()).unwrap();
        assert!(d.devices.is_empty());
        let first = &d.cgroup[0];
        assert!(!first.allow());
        assert_eq!(first.typ(), Some(LinuxDeviceType::A));
        assert_eq!(first.access().as_deref(), Some("rwm"));
        let null = d
            .cgroup
            .iter()
            .find(|r| r.major() == Some(1) && r.minor() == Some(3))
            .unwrap();
        assert!(null.allow());
        assert_eq!(d.cgroup.len(), 13);
    }

    #[test]
    fn char_device_is_added_with_rule() {
        let d = devices(&dev("/dev/null", "/dev/mynull", "rw"), false, &host()).unwrap();
        assert_eq!(d.devices.len(), 1);
        let n = &d.devices[0];
        assert_eq!(n.path().to_str(), Some("/dev/mynull"));
        assert_eq!(n.typ(), LinuxDeviceType::C);
        assert_eq!((n.major(), n.minor()), (1, 3));
        assert_eq!(n.file_mode(), Some(0o666));
        let last = d.cgroup.last().unwrap();
        assert!(last.allow());
        assert_eq!((last.major(), last.minor()), (Some(1), Some(3)));
        assert_eq!(last.access().as_deref(), Some("rw"));
        // No container path: the host path; no permissions: rwm.
        let d = devices(&dev("/dev/zero", "", ""), false, &host()).unwrap();
        assert_eq!(d.devices[0].path().to_str(), Some("/dev/zero"));
        assert_eq!(d.cgroup.last().unwrap().access().as_deref(), Some("rwm"));
    }

    #[test]
    fn device_errors_are_invalid_argument() {
        let e = devices(&dev("/dev/does-not-exist", "/dev/x", "rwm"), false, &host()).unwrap_err();
        assert!(matches!(e, SpecError::DeviceMissing(_)), "{e}");
        assert!(e.is_invalid_argument());
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = devices(
            &dev(f.path().to_str().unwrap(), "/dev/x", "rwm"),
            false,
            &host(),
        )
        .unwrap_err();
        assert!(matches!(e, SpecError::NotADevice(_)), "{e}");
        assert!(e.is_invalid_argument());
        let e = devices(&dev("/dev/null", "/dev/x", "rwx"), false, &host()).unwrap_err();
        assert!(
            matches!(e, SpecError::InvalidDevicePermissions { .. }),
            "{e}"
        );
        let e = devices(&dev("/dev/null", "x", "rw"), false, &host()).unwrap_err();
        assert!(e.is_invalid_argument());
    }

    #[test]
    fn symlink_and_directory_devices() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/null", d.path().join("nul")).unwrap();
        let cfg = dev(d.path().join("nul").to_str().unwrap(), "/dev/n", "r");
        let got = devices(&cfg, false, &host()).unwrap();
        assert_eq!((got.devices[0].major(), got.devices[0].minor()), (1, 3));
        // A directory: devices below it (the symlink is skipped when walking).
        let sub = d.path().join("dir");
        std::fs::create_dir(&sub).unwrap();
        std::os::unix::fs::symlink("/dev/zero", sub.join("z")).unwrap();
        let got = devices(&dev(sub.to_str().unwrap(), "/dev/d", "r"), false, &host()).unwrap();
        assert!(got.devices.is_empty());
    }

    #[test]
    fn cdi_devices_are_unsupported() {
        let cfg = ContainerConfig {
            cdi_devices: vec![k8s_cri::v1::CdiDevice {
                name: "vendor.com/gpu=0".into(),
            }],
            ..Default::default()
        };
        let e = devices(&cfg, false, &host()).unwrap_err();
        assert!(e.is_invalid_argument());
        assert!(e.to_string().contains("vendor.com/gpu=0"), "{e}");
    }

    #[test]
    fn privileged_gets_host_devices_and_allow_all() {
        let d = devices(&ContainerConfig::default(), true, &host()).unwrap();
        assert_eq!(d.cgroup.len(), 1);
        assert!(d.cgroup[0].allow());
        assert_eq!(d.cgroup[0].typ(), Some(LinuxDeviceType::A));
        assert!(
            d.devices
                .iter()
                .any(|x| x.path().to_str() == Some("/dev/null"))
        );
        assert!(!d.devices.iter().any(|x| x.path().starts_with("/dev/pts")));
        assert!(
            !d.devices
                .iter()
                .any(|x| x.path().to_str() == Some("/dev/console"))
        );
    }
}
