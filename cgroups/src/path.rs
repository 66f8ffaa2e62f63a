//! Cgroup paths from kubelet's cgroup parents, for both drivers.

use crate::CgroupDriver;

/// The cgroup (relative to the hierarchy root) of pod `id` under `parent`.
/// With cgroupfs the parent is a path (`/kubepods/burstable/pod1`), with
/// systemd a slice; empty means berth's `default_parent`.
pub fn pod_cgroup_path(
    driver: CgroupDriver,
    parent: &str,
    default_parent: &str,
    id: &str,
) -> Result<String, String> {
    let parent = if parent.is_empty() {
        default_parent
    } else {
        parent
    };
    match driver {
        CgroupDriver::Cgroupfs => {
            if !parent.starts_with('/') {
                return Err(format!(
                    "cgroup parent {parent:?} must be an absolute cgroup path with the cgroupfs driver"
                ));
            }
            if parent.split('/').any(|c| c == ".." || c == ".") {
                return Err(format!("cgroup parent {parent:?} must not contain . or .."));
            }
            Ok(format!("{}/berth-{id}", parent.trim_end_matches('/')))
        }
        CgroupDriver::Systemd => {
            let slice = berth_util::systemd::expand_slice(parent)
                .map_err(|e| format!("cgroup parent: {e}"))?;
            Ok(format!("{slice}/berth-{id}.scope"))
        }
    }
}

/// The cgroup of container `id` in the pod whose cgroup is `pod_cgroup` (as
/// [`pod_cgroup_path`] made it), in the form the OCI runtime takes as
/// `cgroupsPath`: a path below the pod's with cgroupfs; with systemd
/// `<last part of the pod's cgroup>:berth:<id>` (systemd naming only: the
/// systemd driver does not create units yet).
pub fn container_cgroup_path(driver: CgroupDriver, pod_cgroup: &str, id: &str) -> String {
    match driver {
        CgroupDriver::Cgroupfs => format!("/{}/{id}", pod_cgroup.trim_matches('/')),
        CgroupDriver::Systemd => {
            let slice = pod_cgroup
                .trim_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default();
            format!("{slice}:berth:{id}")
        }
    }
}

/// The directory (relative to the hierarchy root) of the cgroup an OCI
/// runtime made for `cgroups_path`: the path itself with cgroupfs; with
/// systemd's `slice:prefix:name`, runc's `<slice's path>/prefix-name.scope`.
/// None when the path is neither.
pub fn cgroup_dir(cgroups_path: &str) -> Option<String> {
    if cgroups_path.starts_with('/') {
        return Some(cgroups_path.to_owned());
    }
    let mut parts = cgroups_path.splitn(3, ':');
    let (slice, prefix, name) = (parts.next()?, parts.next()?, parts.next()?);
    let slice = if slice.is_empty() {
        "/system.slice".to_owned()
    } else {
        berth_util::systemd::expand_slice(slice).ok()?
    };
    let unit = if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    Some(format!("{}/{unit}", slice.trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_cgroup_dirs() {
        assert_eq!(
            cgroup_dir("/berth/berth-p/c1").unwrap(),
            "/berth/berth-p/c1"
        );
        assert_eq!(
            cgroup_dir("kubepods-besteffort-pod1.slice:berth:c1").unwrap(),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/berth-c1.scope"
        );
        assert_eq!(
            cgroup_dir(":berth:c1").unwrap(),
            "/system.slice/berth-c1.scope"
        );
        assert_eq!(cgroup_dir("relative/path"), None);
        assert_eq!(cgroup_dir("notaslice:berth:c1"), None);
    }

    #[test]
    fn pod_paths_per_driver() {
        assert_eq!(
            pod_cgroup_path(
                CgroupDriver::Cgroupfs,
                "/kubepods/besteffort/pod1",
                "/berth",
                "ab"
            )
            .unwrap(),
            "/kubepods/besteffort/pod1/berth-ab"
        );
        assert_eq!(
            pod_cgroup_path(CgroupDriver::Cgroupfs, "", "/berth", "ab").unwrap(),
            "/berth/berth-ab"
        );
        assert_eq!(
            pod_cgroup_path(
                CgroupDriver::Systemd,
                "kubepods-pod1.slice",
                "berth.slice",
                "ab"
            )
            .unwrap(),
            "/kubepods.slice/kubepods-pod1.slice/berth-ab.scope"
        );
        assert!(pod_cgroup_path(CgroupDriver::Cgroupfs, "relative", "/berth", "ab").is_err());
        assert!(pod_cgroup_path(CgroupDriver::Cgroupfs, "/a/../b", "/berth", "ab").is_err());
        assert!(pod_cgroup_path(CgroupDriver::Systemd, "/kubepods", "berth.slice", "ab").is_err());
    }

    #[test]
    fn container_cgroups_are_named_under_their_pod() {
        assert_eq!(
            container_cgroup_path(CgroupDriver::Cgroupfs, "/kubepods/pod1/berth-p", "c1"),
            "/kubepods/pod1/berth-p/c1"
        );
        assert_eq!(
            container_cgroup_path(
                CgroupDriver::Systemd,
                "/kubepods.slice/kubepods-pod1.slice/berth-p.scope",
                "c1"
            ),
            "berth-p.scope:berth:c1"
        );
    }
}
