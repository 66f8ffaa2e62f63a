//! Mounts: containerd's defaults, the pod files, and the CRI mounts.
//!
//! As containerd 1.7 (`WithMounts`, `containerMounts`):
//! - defaults: /proc, /dev (tmpfs), /dev/pts, /dev/shm, /dev/mqueue, /sys
//!   (ro; rw when privileged), /sys/fs/cgroup (ro; rw when privileged); no
//!   /run tmpfs;
//! - the pod's /etc/hostname, /etc/hosts, /etc/resolv.conf (read-only when
//!   the rootfs is) and /dev/shm bind mounts, unless a CRI mount has that
//!   destination;
//! - CRI and pod mounts replace a default with the same destination, and a
//!   bind of /dev drops every default under /dev;
//! - CRI and pod mounts are sorted by depth (stable), so parents come first;
//! - a bind is `rbind` + `rprivate`/`rslave`/`rshared` + `ro`/`rw`; with
//!   `recursive_read_only` also `rro` (which needs the runtime to support it:
//!   runc ≥ 1.1 and youki's libcontainer 0.7 do, through mount_setattr(2),
//!   kernel ≥ 5.12); rslave/rshared set the rootfs propagation and need the
//!   host mount under the source to be a slave or shared mount.
//!
//! Unlike containerd, a missing host path is an error (the CRI says runtimes
//! should report one), not created.

use std::path::{Path, PathBuf};

use k8s_cri::v1::{Mount as CriMount, MountPropagation};
use oci_spec::runtime::Mount;

use crate::error::SpecError;
use crate::host::Host;
use crate::userns::{MountMappings, UserNs};
use crate::{Sandbox, SpecInput};

const ETC_HOSTNAME: &str = "/etc/hostname";
const ETC_HOSTS: &str = "/etc/hosts";
const RESOLV_CONF: &str = "/etc/resolv.conf";
const DEV_SHM: &str = "/dev/shm";

/// The mounts of a container and the rootfs propagation they need.
#[derive(Debug)]
pub(crate) struct Mounts {
    pub mounts: Vec<Mount>,
    pub rootfs_propagation: Option<String>,
}

/// A bind mount to set up, from the CRI or from the pod.
#[derive(Debug, Clone)]
struct Bind {
    container_path: String,
    host_path: PathBuf,
    readonly: bool,
    recursive_read_only: bool,
    propagation: i32,
    /// A pod file: missing means berth's state is broken, not the request.
    pod_file: bool,
    /// An idmapped mount's uid and gid mappings (the pod's user
    /// namespace's), for the OCI mount.
    idmap: Option<MountMappings>,
}

fn oci_mount(dst: &str, typ: &str, src: &str, opts: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dst));
    m.set_typ(Some(typ.into()));
    m.set_source(Some(PathBuf::from(src)));
    m.set_options(Some(opts.iter().map(|o| o.to_string()).collect()));
    m
}

/// containerd's default mounts for a CRI container.
pub(crate) fn default_mounts(privileged: bool) -> Vec<Mount> {
    let rw = if privileged { "rw" } else { "ro" };
    vec![
        oci_mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        oci_mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        oci_mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        oci_mount(
            DEV_SHM,
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        oci_mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        oci_mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", rw]),
        oci_mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", rw],
        ),
    ]
}

/// Lexically cleans a path as Go's filepath.Clean: no `//`, `.`, trailing
/// `/`, and `..` resolved (never above `/` for absolute paths).
pub(crate) fn clean(path: &str) -> String {
    let abs = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !abs {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    match (abs, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn depth(path: &str) -> usize {
    clean(path).matches('/').count()
}

fn in_cri_mounts(dst: &str, cri: &[CriMount]) -> bool {
    cri.iter().any(|m| clean(&m.container_path) == dst)
}

/// The pod's own bind mounts (hostname, hosts, resolv.conf, shm) not
/// overridden by a CRI mount.
fn pod_binds(sandbox: &Sandbox, cri: &[CriMount], readonly_rootfs: bool) -> Vec<Bind> {
    let mut out = Vec::new();
    let mut add = |dst: &str, src: &Path, readonly: bool| {
        if !in_cri_mounts(dst, cri) {
            out.push(Bind {
                container_path: dst.into(),
                host_path: src.to_path_buf(),
                readonly,
                recursive_read_only: false,
                propagation: MountPropagation::PropagationPrivate as i32,
                pod_file: true,
                idmap: None,
            });
        }
    };
    // containerd skips a missing hostname file (sandboxes of old versions).
    if let Some(f) = sandbox.hostname_file.as_deref().filter(|f| f.exists()) {
        add(ETC_HOSTNAME, f, readonly_rootfs);
    }
    if let Some(f) = sandbox.hosts_file.as_deref() {
        add(ETC_HOSTS, f, readonly_rootfs);
    }
    if let Some(f) = sandbox.resolv_conf.as_deref() {
        add(RESOLV_CONF, f, readonly_rootfs);
    }
    let shm = sandbox.shm.as_deref().unwrap_or(Path::new(DEV_SHM));
    add(DEV_SHM, shm, false);
    out
}

fn cri_bind(m: &CriMount, userns: Option<&UserNs>) -> Result<Bind, SpecError> {
    let invalid = |reason: &str| SpecError::InvalidMount {
        container_path: m.container_path.clone(),
        reason: reason.into(),
    };
    if !m.container_path.starts_with('/') {
        return Err(invalid("the container path must be absolute"));
    }
    if m.image.is_some() && m.host_path.is_empty() {
        return Err(SpecError::Unsupported(format!(
            "image volume mount at {:?}",
            m.container_path
        )));
    }
    if m.host_path.is_empty() {
        return Err(invalid("no host path"));
    }
    let idmap = UserNs::mount_mappings(userns, m)?;
    if MountPropagation::try_from(m.propagation).is_err() {
        return Err(invalid(&format!("unknown propagation {}", m.propagation)));
    }
    if m.recursive_read_only {
        if !m.readonly {
            return Err(invalid("recursive_read_only needs readonly"));
        }
        if m.propagation != MountPropagation::PropagationPrivate as i32 {
            return Err(invalid("recursive_read_only needs private propagation"));
        }
    }
    Ok(Bind {
        container_path: m.container_path.clone(),
        host_path: PathBuf::from(&m.host_path),
        readonly: m.readonly,
        recursive_read_only: m.recursive_read_only,
        propagation: m.propagation,
        pod_file: false,
        idmap,
    })
}

/// All mounts of the container, in order.
pub(crate) fn mounts(
    input: &SpecInput,
    privileged: bool,
    host: &Host,
    userns: Option<&UserNs>,
) -> Result<Mounts, SpecError> {
    let cri = &input.config.mounts;
    let readonly_rootfs = input
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|sc| sc.readonly_rootfs);

    let mut binds = cri
        .iter()
        .map(|m| cri_bind(m, userns))
        .collect::<Result<Vec<_>, _>>()?;
    binds.extend(pod_binds(input.sandbox, cri, readonly_rootfs));
    binds.sort_by_key(|b| depth(&b.container_path));

    let dsts: Vec<String> = binds.iter().map(|b| clean(&b.container_path)).collect();
    let dev_bound = dsts.iter().any(|d| d == "/dev");
    let mut out: Vec<Mount> = default_mounts(privileged)
        .into_iter()
        .filter(|m| {
            let dst = clean(&m.destination().to_string_lossy());
            let overridden = dsts.contains(&dst) || (dev_bound && dst.starts_with("/dev/"));
            !overridden
        })
        .collect();

    let mut rootfs_propagation: Option<String> = None;
    for b in &binds {
        let src = match std::fs::canonicalize(&b.host_path) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(if b.pod_file {
                    SpecError::PodFileMissing(b.host_path.clone())
                } else {
                    SpecError::MountSourceMissing {
                        host_path: b.host_path.clone(),
                        container_path: b.container_path.clone(),
                    }
                });
            }
            Err(e) => {
                return Err(SpecError::io(
                    format!("resolving mount source {}", b.host_path.display()),
                    e,
                ));
            }
        };
        let mut options = vec!["rbind".to_string()];
        match MountPropagation::try_from(b.propagation) {
            Ok(MountPropagation::PropagationBidirectional) => {
                ensure_propagation(&src, host, &["shared:"])?;
                options.push("rshared".into());
                rootfs_propagation = Some("rshared".into());
            }
            Ok(MountPropagation::PropagationHostToContainer) => {
                ensure_propagation(&src, host, &["shared:", "master:"])?;
                options.push("rslave".into());
                if rootfs_propagation.as_deref() != Some("rshared") {
                    rootfs_propagation = Some("rslave".into());
                }
            }
            _ => options.push("rprivate".into()),
        }
        options.push(if b.readonly { "ro" } else { "rw" }.into());
        if b.recursive_read_only {
            options.push("rro".into());
        }
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(&b.container_path));
        m.set_typ(Some("bind".into()));
        m.set_source(Some(src));
        m.set_options(Some(options));
        if let Some((uids, gids)) = &b.idmap {
            m.set_uid_mappings(Some(uids.clone()));
            m.set_gid_mappings(Some(gids.clone()));
        }
        out.push(m);
    }
    Ok(Mounts {
        mounts: out,
        rootfs_propagation,
    })
}

/// Checks that the host mount holding `path` has one of the optional fields
/// (`shared:N`, `master:N`) in /proc/self/mountinfo.
fn ensure_propagation(path: &Path, host: &Host, wanted: &[&str]) -> Result<(), SpecError> {
    let info = host
        .mountinfo()
        .map_err(|e| SpecError::io("reading /proc/self/mountinfo", e))?;
    let Some((mountpoint, optional)) = mount_of(&info, path) else {
        return Err(SpecError::MountPropagation {
            path: path.into(),
            reason: "no mount found in /proc/self/mountinfo".into(),
        });
    };
    if optional
        .iter()
        .any(|o| wanted.iter().any(|w| o.starts_with(w)))
    {
        return Ok(());
    }
    let kind = if wanted.len() == 1 {
        "a shared"
    } else {
        "a shared or slave"
    };
    Err(SpecError::MountPropagation {
        path: path.into(),
        reason: format!("it is mounted on {mountpoint:?}, which is not {kind} mount"),
    })
}

/// The mountpoint holding `path` (the longest matching mountpoint, the last
/// one listed on ties) and its optional fields.
fn mount_of(mountinfo: &str, path: &Path) -> Option<(String, Vec<String>)> {
    let mut best: Option<(String, Vec<String>)> = None;
    for e in berth_mountinfo::parse(mountinfo) {
        if !path.starts_with(&e.mount_point) {
            continue;
        }
        let longer = best
            .as_ref()
            .is_none_or(|(b, _)| e.mount_point.len() >= b.len());
        if longer {
            let optional = e.optional.iter().map(|s| s.to_string()).collect();
            best = Some((e.mount_point, optional));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Fixture, host};

    fn find<'a>(ms: &'a [Mount], dst: &str) -> Option<&'a Mount> {
        ms.iter().find(|m| m.destination().to_str() == Some(dst))
    }

    fn opts(m: &Mount) -> Vec<String> {
        m.options().clone().unwrap_or_default()
    }

    fn cri(host_path: &Path, dst: &str) -> CriMount {
        CriMount {
            container_path: dst.into(),
            host_path: host_path.to_string_lossy().into_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean("/a//b/./c/"), "/a/b/c");
        assert_eq!(clean("/../a/../../b"), "/b");
        assert_eq!(clean("/"), "/");
        assert_eq!(clean("a/../.."), "..");
        assert_eq!(clean(""), ".");
    }

    #[test]
    fn defaults_then_pod_files() {
        let f = Fixture::new();
        let m = mounts(&f.input(), false, &host(), None).unwrap();
        let dsts: Vec<&str> = m
            .mounts
            .iter()
            .map(|m| m.destination().to_str().unwrap())
            .collect();
        assert_eq!(
            dsts,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup",
                "/etc/hostname",
                "/etc/hosts",
                "/etc/resolv.conf",
                "/dev/shm",
            ]
        );
        assert_eq!(opts(find(&m.mounts, "/sys").unwrap()).last().unwrap(), "ro");
        assert_eq!(
            opts(find(&m.mounts, "/sys/fs/cgroup").unwrap())
                .last()
                .unwrap(),
            "ro"
        );
        let shm = find(&m.mounts, "/dev/shm").unwrap();
        assert_eq!(shm.typ().as_deref(), Some("bind"));
        assert_eq!(
            shm.source().as_deref(),
            Some(
                std::fs::canonicalize(f.dir.path().join("shm"))
                    .unwrap()
                    .as_path()
            )
        );
        assert_eq!(opts(shm), ["rbind", "rprivate", "rw"]);
        assert_eq!(
            opts(find(&m.mounts, "/etc/hosts").unwrap()),
            ["rbind", "rprivate", "rw"]
        );
        assert!(m.rootfs_propagation.is_none());
        // Privileged: sysfs and cgroupfs are writable.
        let m = mounts(&f.input(), true, &host(), None).unwrap();
        assert_eq!(opts(find(&m.mounts, "/sys").unwrap()).last().unwrap(), "rw");
        assert_eq!(
            opts(find(&m.mounts, "/sys/fs/cgroup").unwrap())
                .last()
                .unwrap(),
            "rw"
        );
    }

    #[test]
    fn readonly_rootfs_makes_pod_files_readonly_and_host_ipc_binds_host_shm() {
        let mut f = Fixture::new();
        f.security_context().readonly_rootfs = true;
        f.sandbox.shm = None;
        let m = mounts(&f.input(), false, &host(), None).unwrap();
        for p in ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"] {
            assert_eq!(
                opts(find(&m.mounts, p).unwrap()).last().unwrap(),
                "ro",
                "{p}"
            );
        }
        let shm = find(&m.mounts, "/dev/shm").unwrap();
        assert_eq!(
            shm.source().as_deref(),
            Some(std::fs::canonicalize("/dev/shm").unwrap().as_path())
        );
        assert_eq!(opts(shm).last().unwrap(), "rw");
    }

    #[test]
    fn missing_hostname_file_is_skipped_missing_hosts_is_an_error() {
        let mut f = Fixture::new();
        std::fs::remove_file(f.dir.path().join("hostname")).unwrap();
        let m = mounts(&f.input(), false, &host(), None).unwrap();
        assert!(find(&m.mounts, "/etc/hostname").is_none());
        f.sandbox.hosts_file = Some(f.dir.path().join("gone"));
        let e = mounts(&f.input(), false, &host(), None).unwrap_err();
        assert!(matches!(e, SpecError::PodFileMissing(_)), "{e}");
        assert!(!e.is_invalid_argument());
    }

    #[test]
    fn cri_mounts_override_sort_and_propagate() {
        let mut f = Fixture::new();
        let vol = f.mkdir("vol");
        let sub = f.mkdir("sub");
        let hosts = f.file("myhosts");
        f.config.mounts = vec![
            cri(&sub, "/data/sub"),
            CriMount {
                readonly: true,
                ..cri(&vol, "/data")
            },
            cri(&hosts, "/etc/hosts/"),
            CriMount {
                propagation: MountPropagation::PropagationHostToContainer as i32,
                ..cri(&vol, "/sys")
            },
        ];
        let mut h = host();
        h.mountinfo = Some(format!(
            "22 1 0:21 / / rw shared:1 - ext4 /dev/sda rw\n\
             30 22 0:30 / {} rw master:5 - tmpfs tmpfs rw\n",
            std::fs::canonicalize(f.dir.path()).unwrap().display()
        ));
        let m = mounts(&f.input(), false, &h, None).unwrap();
        let dsts: Vec<&str> = m
            .mounts
            .iter()
            .map(|m| m.destination().to_str().unwrap())
            .collect();
        // /sys default replaced; /etc/hosts from the CRI, not the pod; parents
        // before children.
        assert_eq!(
            dsts,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/mqueue",
                "/sys/fs/cgroup",
                "/data",
                "/sys",
                "/data/sub",
                "/etc/hosts/",
                "/etc/hostname",
                "/etc/resolv.conf",
                "/dev/shm",
            ]
        );
        let hosts_m = find(&m.mounts, "/etc/hosts/").unwrap();
        assert_eq!(
            hosts_m.source().as_deref(),
            Some(std::fs::canonicalize(&hosts).unwrap().as_path())
        );
        assert_eq!(
            opts(find(&m.mounts, "/data").unwrap()),
            ["rbind", "rprivate", "ro"]
        );
        assert_eq!(
            opts(find(&m.mounts, "/sys").unwrap()),
            ["rbind", "rslave", "rw"]
        );
        assert_eq!(m.rootfs_propagation.as_deref(), Some("rslave"));
    }

    #[test]
    fn bidirectional_needs_a_shared_mount() {
        let mut f = Fixture::new();
        let vol = f.mkdir("vol");
        f.config.mounts = vec![CriMount {
            propagation: MountPropagation::PropagationBidirectional as i32,
            ..cri(&vol, "/shared")
        }];
        let mut h = host();
        h.mountinfo = Some("22 1 0:21 / / rw master:1 - ext4 /dev/sda rw\n".into());
        let e = mounts(&f.input(), false, &h, None).unwrap_err();
        assert!(matches!(e, SpecError::MountPropagation { .. }), "{e}");
        h.mountinfo = Some("22 1 0:21 / / rw shared:1 - ext4 /dev/sda rw\n".into());
        let m = mounts(&f.input(), false, &h, None).unwrap();
        assert_eq!(
            opts(find(&m.mounts, "/shared").unwrap()),
            ["rbind", "rshared", "rw"]
        );
        assert_eq!(m.rootfs_propagation.as_deref(), Some("rshared"));
    }

    #[test]
    fn dev_bind_drops_defaults_under_dev() {
        let mut f = Fixture::new();
        let d = f.mkdir("devdir");
        f.config.mounts = vec![cri(&d, "/dev")];
        let m = mounts(&f.input(), false, &host(), None).unwrap();
        let devs: Vec<&str> = m
            .mounts
            .iter()
            .map(|m| m.destination().to_str().unwrap())
            .filter(|d| d.starts_with("/dev"))
            .collect();
        // Only the CRI /dev and the pod's shm (added after the filtering, as
        // containerd does) remain.
        assert_eq!(devs, ["/dev", "/dev/shm"]);
        assert_eq!(
            find(&m.mounts, "/dev").unwrap().typ().as_deref(),
            Some("bind")
        );
    }

    #[test]
    fn recursive_read_only() {
        let mut f = Fixture::new();
        let vol = f.mkdir("vol");
        f.config.mounts = vec![CriMount {
            readonly: true,
            recursive_read_only: true,
            ..cri(&vol, "/ro")
        }];
        let m = mounts(&f.input(), false, &host(), None).unwrap();
        assert_eq!(
            opts(find(&m.mounts, "/ro").unwrap()),
            ["rbind", "rprivate", "ro", "rro"]
        );
        f.config.mounts[0].readonly = false;
        let e = mounts(&f.input(), false, &host(), None).unwrap_err();
        assert!(e.is_invalid_argument(), "{e}");
        f.config.mounts[0].readonly = true;
        f.config.mounts[0].propagation = MountPropagation::PropagationHostToContainer as i32;
        let e = mounts(&f.input(), false, &host(), None).unwrap_err();
        assert!(matches!(e, SpecError::InvalidMount { .. }), "{e}");
    }

    #[test]
    fn missing_source_is_invalid_argument_naming_it() {
        let mut f = Fixture::new();
        let gone = f.dir.path().join("does-not-exist");
        f.config.mounts = vec![cri(&gone, "/x")];
        let e = mounts(&f.input(), false, &host(), None).unwrap_err();
        assert!(e.is_invalid_argument());
        assert!(e.to_string().contains("does-not-exist"), "{e}");
        f.config.mounts = vec![cri(Path::new("/tmp"), "relative")];
        assert!(
            mounts(&f.input(), false, &host(), None)
                .unwrap_err()
                .is_invalid_argument()
        );
        f.config.mounts = vec![CriMount {
            uid_mappings: vec![Default::default()],
            ..cri(Path::new("/tmp"), "/x")
        }];
        assert!(
            mounts(&f.input(), false, &host(), None)
                .unwrap_err()
                .is_invalid_argument()
        );
    }

    #[test]
    fn symlinked_source_is_resolved() {
        let mut f = Fixture::new();
        let real = f.mkdir("real");
        let link = f.dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        f.config.mounts = vec![cri(&link, "/x")];
        let m = mounts(&f.input(), false, &host(), None).unwrap();
        assert_eq!(
            find(&m.mounts, "/x").unwrap().source().as_deref(),
            Some(std::fs::canonicalize(&real).unwrap().as_path())
        );
    }

    #[test]
    fn mountinfo_parsing() {
        let info = "1 0 0:1 / / rw shared:1 - ext4 /dev/sda rw\n\
                    2 1 0:2 / /var/lib/a\\040b rw master:3 shared:4 - tmpfs t rw\n\
                    3 1 0:3 / /var/lib rw - tmpfs t rw\n";
        let (mp, opt) = mount_of(info, Path::new("/var/lib/a b/c")).unwrap();
        assert_eq!(mp, "/var/lib/a b");
        assert_eq!(opt, ["master:3", "shared:4"]);
        let (mp, opt) = mount_of(info, Path::new("/var/lib/x")).unwrap();
        assert_eq!(mp, "/var/lib");
        assert!(opt.is_empty());
        let (mp, _) = mount_of(info, Path::new("/etc")).unwrap();
        assert_eq!(mp, "/");
    }
}
