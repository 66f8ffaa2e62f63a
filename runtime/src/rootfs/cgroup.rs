//! The cgroup filesystem inside the container: on cgroup v1 a tmpfs with
//! the container's own directory of each hierarchy bound into it, on v2 a
//! cgroup2 mount in a cgroup namespace, else the container's directory.

use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use libcontainer::oci_spec::runtime::Mount;
use libcontainer::rootfs::utils::{MountOptionConfig, parse_mount};
use libcontainer::syscall::Syscall;
use libcontainer::syscall::linux::{MOUNT_ATTR_RDONLY, MountAttr};
use nix::errno::Errno;
use nix_lc::mount::MsFlags;

use super::*;

/// The cgroup filesystem: on cgroup v1 a tmpfs with the container's own
/// directory of each hierarchy bound into it (libcontainer's and runc's
/// emulation), on v2 a cgroup2 mount in a cgroup namespace, else the
/// container's directory bound.
pub(super) fn mount_cgroup(
    sys: &dyn Syscall,
    root: &Root,
    m: &Mount,
    cfg: &MountOptionConfig,
    cgroup_ns: bool,
    mountinfo: &str,
) -> Result<()> {
    let ro = cfg.flags.contains(MsFlags::MS_RDONLY);
    let dest = m.destination().clone();
    let hierarchies: Vec<(String, PathBuf)> = berth_mountinfo::parse(mountinfo)
        .filter(|e| e.fstype == "cgroup" && Path::new(&e.mount_point).starts_with("/sys/fs/cgroup"))
        .filter_map(|e| {
            let mp = PathBuf::from(&e.mount_point);
            Some((mp.file_name()?.to_str()?.to_string(), mp))
        })
        .collect();
    if hierarchies.is_empty() {
        return mount_cgroup2(sys, root, m, cfg, cgroup_ns);
    }
    let tmpfs = mount_spec(
        dest.clone(),
        "tmpfs",
        "tmpfs",
        &["noexec", "nosuid", "nodev", "mode=755"],
    )?;
    let tcfg = parse_mount(&tmpfs).map_err(|e| anyhow::anyhow!("{e}"))?;
    mount_into(sys, root, &tmpfs, &tcfg)?;
    let own = own_cgroups()?;
    for (name, host_mount) in &hierarchies {
        let sub = dest.join(name);
        if cgroup_ns {
            // One fsconfig key per controller of a co-mounted hierarchy.
            let data: Vec<String> = if name == "systemd" {
                vec!["name=systemd".to_string()]
            } else {
                name.split(',').map(str::to_string).collect()
            };
            let mut opts = vec!["noexec", "nosuid", "nodev"];
            if ro {
                opts.push("ro");
            }
            let mut sm = mount_spec(sub, "cgroup", "cgroup", &opts)?;
            let mut scfg = parse_mount(&sm).map_err(|e| anyhow::anyhow!("{e}"))?;
            scfg.data = data;
            sm.set_options(None);
            mount_into(sys, root, &sm, &scfg)?;
        } else {
            let key = if name == "systemd" {
                "name=systemd"
            } else {
                name.as_str()
            };
            let Some(path) = own.get(key) else {
                continue;
            };
            let source = host_mount.join(relative(Path::new(path)));
            let mut opts = vec!["rbind"];
            if ro {
                opts.push("ro");
            }
            let bm = mount_spec(
                sub,
                "bind",
                source.to_str().context("cgroup path not UTF-8")?,
                &opts,
            )?;
            let bcfg = parse_mount(&bm).map_err(|e| anyhow::anyhow!("{e}"))?;
            mount_into(sys, root, &bm, &bcfg)?;
        }
        // Co-mounted controllers (cpu,cpuacct) also answer to each name.
        if name.contains(',') {
            let dir = root.resolve(&dest).context("resolve the cgroup tmpfs")?;
            for part in name.split(',') {
                match nix::unistd::symlinkat(name.as_str(), &dir, part) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e).with_context(|| format!("symlink {part}")),
                }
            }
        }
    }
    if ro {
        let mounted = root.resolve(&dest).context("resolve the cgroup tmpfs")?;
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        setattr(sys, mounted.as_fd(), 0, &attr).context("make the cgroup tmpfs read-only")?;
    }
    Ok(())
}

fn mount_cgroup2(
    sys: &dyn Syscall,
    root: &Root,
    m: &Mount,
    cfg: &MountOptionConfig,
    cgroup_ns: bool,
) -> Result<()> {
    let dest = m.destination().clone();
    let mut c = cfg.clone();
    c.data.clear();
    if cgroup_ns {
        let cm = mount_spec(dest, "cgroup2", "cgroup", &[])?;
        return mount_into(sys, root, &cm, &c);
    }
    let own = own_cgroups()?;
    let path = own
        .get("")
        .context("no unified cgroup in /proc/self/cgroup")?;
    let source = Path::new("/sys/fs/cgroup").join(relative(Path::new(path)));
    let bm = mount_spec(
        dest,
        "bind",
        source.to_str().context("cgroup path not UTF-8")?,
        &["rbind"],
    )?;
    c.flags |= MsFlags::MS_BIND | MsFlags::MS_REC;
    mount_into(sys, root, &bm, &c)
}

/// This process's cgroup per hierarchy (key: its controllers joined by
/// `,`, `name=systemd`, or empty for v2), relative to the cgroups of the
/// host's pid 1 (as libcontainer: berth-runtime may itself run in a
/// container whose cgroup root is not the host's).
fn own_cgroups() -> Result<std::collections::HashMap<String, String>> {
    let parse = |text: &str| -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, ':');
                let _id = f.next()?;
                Some((f.next()?.to_string(), f.next()?.to_string()))
            })
            .collect()
    };
    let own = parse(&fs::read_to_string("/proc/self/cgroup").context("read /proc/self/cgroup")?);
    let init = parse(&fs::read_to_string("/proc/1/cgroup").unwrap_or_default());
    Ok(own
        .into_iter()
        .map(|(k, path)| {
            let base = init
                .iter()
                .find(|(ik, _)| *ik == k)
                .map(|(_, p)| p.as_str())
                .unwrap_or("");
            let rel = Path::new(&path)
                .strip_prefix(base)
                .map(|r| format!("/{}", r.display()))
                .unwrap_or(path.clone());
            (k, rel)
        })
        .collect())
}
