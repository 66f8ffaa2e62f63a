//! The cgroup directories a process is in, read from `/proc/<pid>/cgroup` and
//! this process's mountinfo: what an exec joins to be where the container's
//! init is.
//!
//! libcgroups' manager finds the same directories through the procfs crate
//! and pathrs (~0.55 ms per call here, most of a direct exec's setup); these
//! are two plain reads. Which hierarchies count follows libcgroups: on a
//! cgroup v1 or hybrid host the controller hierarchies (not named ones
//! like name=systemd, not the unified one beside them); on a pure v2 host
//! the unified one.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The directories (each holding cgroup.procs) `pid` is in.
pub fn of_process(pid: i32) -> Result<Vec<PathBuf>> {
    let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .with_context(|| format!("read /proc/{pid}/cgroup"))?;
    let mountinfo =
        fs::read_to_string("/proc/self/mountinfo").context("read /proc/self/mountinfo")?;
    resolve(&cgroup, &mountinfo)
}

/// One cgroup mount: its type, super options (v1: its controllers among
/// them), root and mount point.
struct Mount<'a> {
    v2: bool,
    options: Vec<&'a str>,
    root: String,
    point: String,
}

fn cgroup_mounts(mountinfo: &str) -> Vec<Mount<'_>> {
    berth_mountinfo::parse(mountinfo)
        .filter_map(|e| {
            let v2 = match e.fstype {
                "cgroup" => false,
                "cgroup2" => true,
                _ => return None,
            };
            Some(Mount {
                v2,
                options: e.super_options.split(',').collect(),
                root: e.root,
                point: e.mount_point,
            })
        })
        .collect()
}

fn resolve(cgroup: &str, mountinfo: &str) -> Result<Vec<PathBuf>> {
    let mounts = cgroup_mounts(mountinfo);
    let mut v1 = Vec::new();
    let mut unified = None;
    for line in cgroup.lines().filter(|l| !l.is_empty()) {
        let mut f = line.splitn(3, ':');
        let (_id, controllers, path) = match (f.next(), f.next(), f.next()) {
            (Some(i), Some(c), Some(p)) => (i, c, p),
            _ => bail!("unexpected line in a cgroup file: {line:?}"),
        };
        if controllers.is_empty() {
            unified = Some(path);
            continue;
        }
        if controllers.starts_with("name=") {
            continue;
        }
        // A controller is in one hierarchy only; it may be mounted more
        // than once (a bind of a subtree): the first mount that holds the
        // path.
        let want: Vec<&str> = controllers.split(',').collect();
        let dir = mounts
            .iter()
            .filter(|m| !m.v2 && want.iter().all(|c| m.options.contains(c)))
            .find_map(|m| join(m, path).ok())
            .with_context(|| {
                format!("no mount of the {controllers} cgroup hierarchy holds {path}")
            })?;
        v1.push(dir);
    }
    if !v1.is_empty() {
        return Ok(v1);
    }
    let path = unified.context("the process is in no cgroup hierarchy")?;
    let dir = mounts
        .iter()
        .filter(|m| m.v2)
        .find_map(|m| join(m, path).ok())
        .with_context(|| format!("no mount of the unified cgroup hierarchy holds {path}"))?;
    Ok(vec![dir])
}

/// The directory of cgroup `path` under `mount`, whose root may itself be
/// a cgroup below the hierarchy's root.
fn join(mount: &Mount, path: &str) -> Result<PathBuf> {
    let rel = Path::new(path)
        .strip_prefix(&mount.root)
        .with_context(|| format!("cgroup {path} is outside the mount of {}", mount.root))?;
    if rel
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        bail!("cgroup path {path} has `..`");
    }
    Ok(Path::new(&mount.point).join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:40 /docker/x /mnt/my\\040cg rw - cgroup cgroup rw,pids
";

    #[test]
    fn v1_controller_hierarchies_are_joined() {
        let cg = "5:pids:/docker/x/berth/c1\n4:memory:/berth/c1\n2:cpu,cpuacct:/berth/c1\n1:name=systemd:/user.slice\n0::/init.scope\n";
        assert_eq!(
            resolve(cg, HYBRID).unwrap(),
            vec![
                PathBuf::from("/mnt/my cg/berth/c1"),
                PathBuf::from("/sys/fs/cgroup/memory/berth/c1"),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/berth/c1"),
            ]
        );
    }

    #[test]
    fn pure_v2_joins_the_unified_hierarchy() {
        let mi = "30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            resolve("0::/berth/pod/c1\n", mi).unwrap(),
            vec![PathBuf::from("/sys/fs/cgroup/berth/pod/c1")]
        );
    }

    #[test]
    fn unresolvable_cgroups_are_errors() {
        // A hierarchy with no mount.
        assert!(resolve("7:blkio:/c1\n", HYBRID).is_err());
        // Outside the mount's root.
        assert!(resolve("5:pids:/other/c1\n", HYBRID).is_err());
        assert!(resolve("5:pids:/docker/x/../y\n", HYBRID).is_err());
        assert!(resolve("garbage\n", HYBRID).is_err());
        assert!(resolve("", HYBRID).is_err());
    }

    #[test]
    fn own_cgroups_resolve_on_this_host() {
        let dirs = of_process(std::process::id() as i32).unwrap();
        assert!(!dirs.is_empty());
        for d in dirs {
            assert!(d.join("cgroup.procs").exists(), "{}", d.display());
        }
    }
}
