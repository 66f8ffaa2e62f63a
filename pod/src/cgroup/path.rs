//! Cgroup paths from kubelet's cgroup parents, for both drivers.

use crate::config::CgroupDriver;

/// Expands a systemd slice name to its cgroup path, as systemd lays it out:
/// `kubepods-burstable-pod1.slice` is
/// `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice`.
pub fn systemd_slice_path(slice: &str) -> Result<String, String> {
    if slice == "-.slice" || slice.is_empty() {
        return Ok(String::new());
    }
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err(format!(
            "cgroup parent {slice:?} is not a systemd slice (*.slice)"
        ));
    };
    if stem.contains('/') || stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
        return Err(format!("cgroup parent {slice:?} is not a valid slice name"));
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    Ok(path)
}

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
            let slice = systemd_slice_path(parent)?;
            Ok(format!("{slice}/berth-{id}.scope"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_slices_expand_like_systemd() {
        assert_eq!(
            systemd_slice_path("kubepods-burstable-pod1234.slice").unwrap(),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice"
        );
        assert_eq!(systemd_slice_path("system.slice").unwrap(), "/system.slice");
        assert_eq!(systemd_slice_path("-.slice").unwrap(), "");
        for bad in ["kubepods", "a/b.slice", "-a.slice", "a--b.slice"] {
            assert!(systemd_slice_path(bad).is_err(), "{bad}");
        }
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
}
