//! The container's filesystem, set up by the direct create's init
//! (direct_create.rs) in its new mount namespace: what libcontainer's
//! `RootFS` does, with each destination resolved once under an fd of the
//! rootfs by openat2(RESOLVE_IN_ROOT) instead of pathrs' checks of every
//! path component and /proc open (~1800 syscalls per create there).
//!
//! Before pivot_root ([`prepare`]): the root's propagation, the rootfs
//! bound onto itself, the spec's mounts (new mount API: open_tree or
//! fsopen, mount_setattr, move_mount onto the resolved fd), the cgroup
//! filesystem, /dev's symlinks and device nodes. Then [`pivot`]. After it
//! ([`mod@finish`]): the root's final propagation, stdio on the host's
//! /dev/null reopened, sysctls, a read-only root, read-only and masked
//! paths. Once pivoted, paths are the container's and cannot lead out of
//! its root, so the last steps use plain paths as libcontainer does.
//!
//! Differences from libcontainer 0.7, each what runc does:
//! - a mount's propagation option (rprivate, rslave, rshared, ...) is
//!   applied to it (libcontainer parses and drops it) and the root
//!   propagations `rshared`, `rslave`, `rprivate` are accepted;
//! - an `ro` cgroup mount is read-only, its v1 hierarchies included
//!   (libcontainer binds them writable, so a container's root could raise
//!   its own limits).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use libcontainer::oci_spec::runtime::{LinuxDevice, Mount, Spec};
use libcontainer::rootfs::Device;
use libcontainer::rootfs::utils::{MountOptionConfig, default_devices, is_bind, parse_mount};
use libcontainer::syscall::Syscall;
use libcontainer::syscall::linux::{
    AT_EMPTY_PATH, AT_RECURSIVE, FSCONFIG_CMD_CREATE, FSCONFIG_SET_FLAG, FSCONFIG_SET_STRING,
    MOUNT_ATTR__ATIME, MOUNT_ATTR_NOATIME, MOUNT_ATTR_NODEV, MOUNT_ATTR_NODIRATIME,
    MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, MOUNT_ATTR_RELATIME,
    MOUNT_ATTR_STRICTATIME, MOVE_MOUNT_F_EMPTY_PATH, MOVE_MOUNT_T_EMPTY_PATH, MountAttr,
};
use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use nix_lc::mount::MsFlags;

mod cgroup;
mod finish;

use cgroup::mount_cgroup;
pub use finish::{finish, pivot};

/// The rootfs, opened once; every destination is resolved under it.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    fn open(path: &Path) -> Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("open the rootfs {}", path.display()))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// An O_PATH fd of `p` (a path in the container), symlinks followed
    /// as if the rootfs were `/`: nothing resolves outside it.
    fn resolve(&self, p: &Path) -> nix::Result<OwnedFd> {
        let rel = relative(p);
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let target: &Path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &rel
        };
        nix::fcntl::openat2(self.fd.as_fd(), target, how)
    }

    /// The directory `p`, created (with its missing parents, mode 0755)
    /// where it does not exist. A directory made here is opened from its
    /// parent's fd without following links; one found (or made meanwhile
    /// by someone else) is resolved under the root like any path.
    fn mkdir_all(&self, p: &Path) -> Result<OwnedFd> {
        match self.resolve(p) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e).with_context(|| format!("resolve {}", p.display())),
        }
        let rel = relative(p);
        let Some(name) = rel.file_name() else {
            bail!("the root {} is missing", self.path.display());
        };
        let parent = self.mkdir_all(rel.parent().unwrap_or(Path::new("")))?;
        match nix::sys::stat::mkdirat(&parent, name, Mode::from_bits_truncate(0o755)) {
            Ok(()) => nix::fcntl::openat(
                &parent,
                name,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .with_context(|| format!("open {}", p.display())),
            Err(Errno::EEXIST) => self
                .resolve(p)
                .with_context(|| format!("resolve {}", p.display())),
            Err(e) => Err(e).with_context(|| format!("mkdir {}", p.display())),
        }
    }

    /// The file `p`, created empty (mode 0644) where nothing is there.
    fn touch(&self, p: &Path) -> Result<OwnedFd> {
        let name = p
            .file_name()
            .with_context(|| format!("{}: no file name", p.display()))?;
        let parent = self.mkdir_all(p.parent().unwrap_or(Path::new("/")))?;
        match nix::fcntl::openat(
            parent.as_fd(),
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_WRONLY,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(_) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e).with_context(|| format!("create {}", p.display())),
        }
        self.resolve(p)
            .with_context(|| format!("resolve {}", p.display()))
    }
}

/// `p` without its leading `/`, `.` and `..` components resolved
/// lexically (never above the root).
fn relative(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Everything before pivot_root.
/// `joined` returns once this process is in the container's cgroups; it
/// is called before the cgroup filesystem is mounted and before device
/// nodes are made.
pub fn prepare(
    sys: &dyn Syscall,
    spec: &Spec,
    rootfs: &Path,
    cgroup_ns: bool,
    joined: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    let linux = spec
        .linux()
        .as_ref()
        .context("the spec has no linux section")?;
    let root_flags = match linux.rootfs_propagation().as_deref() {
        Some("shared" | "rshared") => MsFlags::MS_SHARED,
        Some("private" | "rprivate") => MsFlags::MS_PRIVATE,
        Some("slave" | "rslave" | "unbindable" | "runbindable") | None => MsFlags::MS_SLAVE,
        Some(other) => bail!("unknown rootfsPropagation {other:?}"),
    };
    sys.mount(
        None,
        Path::new("/"),
        None,
        root_flags | MsFlags::MS_REC,
        None,
    )
    .context("set the propagation of /")?;
    // The host's mounts, read once: the rootfs's parent and the cgroup
    // hierarchies (the rootfs's own bind below is neither).
    let mountinfo = berth_mountinfo::read_own();
    make_parent_mount_private(sys, rootfs, &mountinfo)?;
    sys.mount(
        Some(rootfs),
        rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .with_context(|| format!("bind the rootfs {} onto itself", rootfs.display()))?;
    let root = Root::open(rootfs)?;
    for m in spec.mounts().as_deref().unwrap_or_default() {
        if m.typ().as_deref() == Some("cgroup") {
            joined()?;
        }
        setup_mount(sys, &root, m, cgroup_ns, &mountinfo)
            .with_context(|| format!("mount {}", m.destination().display()))?;
    }
    let dev = root.mkdir_all(Path::new("/dev"))?;
    if Path::new("/proc/kcore").exists() {
        symlink(&dev, "/proc/kcore", "kcore")?;
    }
    for (target, name) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        symlink(&dev, target, name)?;
    }
    let listed: &[LinuxDevice] = linux.devices().as_deref().unwrap_or_default();
    let defaults: Vec<LinuxDevice> = default_devices()
        .into_iter()
        .filter(|d| !listed.iter().any(|l| l.path() == d.path()))
        .collect();
    joined()?;
    Device::new()
        .create_devices(&root.path, listed.iter().chain(&defaults), false)
        .context("create device nodes")?;
    match nix::unistd::unlinkat(&dev, "ptmx", nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(e).context("remove /dev/ptmx"),
    }
    symlink(&dev, "pts/ptmx", "ptmx")
}

fn symlink(dir: &OwnedFd, target: &str, name: &str) -> Result<()> {
    nix::unistd::symlinkat(target, dir, name).with_context(|| format!("symlink /dev/{name}"))
}

/// pivot_root needs the rootfs's parent mount not shared; a shared one
/// would also propagate the container's mounts to the host.
fn make_parent_mount_private(sys: &dyn Syscall, rootfs: &Path, mountinfo: &str) -> Result<()> {
    let parent = berth_mountinfo::parse(mountinfo)
        .filter(|e| rootfs.starts_with(&e.mount_point))
        .max_by_key(|e| e.mount_point.len())
        .with_context(|| format!("no mount holds {}", rootfs.display()))?;
    if parent.optional.iter().any(|o| o.starts_with("shared:")) {
        sys.mount(
            None,
            Path::new(&parent.mount_point),
            None,
            MsFlags::MS_PRIVATE,
            None,
        )
        .with_context(|| format!("make {} private", parent.mount_point))?;
    }
    Ok(())
}

fn setup_mount(
    sys: &dyn Syscall,
    root: &Root,
    m: &Mount,
    cgroup_ns: bool,
    mountinfo: &str,
) -> Result<()> {
    let mut cfg = parse_mount(m).map_err(|e| anyhow::anyhow!("{e}"))?;
    match m.typ().as_deref() {
        Some("cgroup") => return mount_cgroup(sys, root, m, &cfg, cgroup_ns, mountinfo),
        Some(t @ ("proc" | "sysfs")) => {
            // Over an ordinary directory only (GHSA-fh74-hm69-rqjw).
            let clean = Path::new("/").join(relative(m.destination()));
            if clean != Path::new(if t == "proc" { "/proc" } else { "/sys" }) {
                bail!(
                    "{t} may only be mounted on /{t}",
                    t = if t == "proc" { "proc" } else { "sys" }
                );
            }
            if let Ok(fd) = root.resolve(&clean) {
                let st = nix::sys::stat::fstat(&fd).context("stat the destination")?;
                if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                    bail!("{t} must be mounted on an ordinary directory");
                }
            }
        }
        _ if m.destination() == Path::new("/dev") => cfg.flags.remove(MsFlags::MS_RDONLY),
        _ => {}
    }
    mount_into(sys, root, m, &cfg)
}

/// mount_setattr's attributes for the mount flags (atime modes need
/// MOUNT_ATTR__ATIME cleared too).
fn attr_of(flags: MsFlags) -> MountAttr {
    let map = [
        (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
        (MsFlags::MS_NODIRATIME, MOUNT_ATTR_NODIRATIME),
    ];
    let mut attr = MountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    for (f, a) in map {
        if flags.contains(f) {
            attr.attr_set |= a;
        }
    }
    let atime = if flags.contains(MsFlags::MS_STRICTATIME) {
        Some(MOUNT_ATTR_STRICTATIME)
    } else if flags.contains(MsFlags::MS_NOATIME) {
        Some(MOUNT_ATTR_NOATIME)
    } else if flags.contains(MsFlags::MS_RELATIME) {
        Some(MOUNT_ATTR_RELATIME)
    } else {
        None
    };
    if let Some(a) = atime {
        attr.attr_clr |= MOUNT_ATTR__ATIME;
        attr.attr_set |= a;
    }
    attr
}

fn setattr(sys: &dyn Syscall, fd: BorrowedFd, flags: u32, attr: &MountAttr) -> Result<()> {
    sys.mount_setattr(
        fd,
        Path::new(""),
        flags | AT_EMPTY_PATH,
        attr,
        std::mem::size_of::<MountAttr>(),
    )
    .context("mount_setattr")
}

/// One mount of the spec (or one the cgroup setup makes) onto its
/// destination in the rootfs.
fn mount_into(sys: &dyn Syscall, root: &Root, m: &Mount, cfg: &MountOptionConfig) -> Result<()> {
    let dest = m.destination();
    let source = m.source().as_ref().context("the mount has no source")?;
    let bind = is_bind(m);
    let tree = if bind {
        let mut flags =
            libc::OPEN_TREE_CLOEXEC | libc::OPEN_TREE_CLONE | libc::AT_EMPTY_PATH as u32;
        if m.options()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|o| o == "rbind")
        {
            flags |= libc::AT_RECURSIVE as u32;
        }
        // open_tree follows the source's links itself.
        let path = source.to_str().context("a source that is not UTF-8")?;
        sys.open_tree(libc::AT_FDCWD, Some(path), flags)
            .with_context(|| format!("source {path}"))?
    } else {
        let fs = sys
            .fsopen(m.typ().as_deref(), 0)
            .with_context(|| format!("fsopen {:?}", m.typ()))?;
        let src = source.to_str().context("a source that is not UTF-8")?;
        sys.fsconfig(
            fs.as_fd(),
            FSCONFIG_SET_STRING as u32,
            Some("source"),
            Some(src),
            0,
        )
        .context("fsconfig source")?;
        for opt in cfg.data.iter().filter(|o| !o.is_empty()) {
            match opt.split_once('=') {
                Some((k, v)) => {
                    sys.fsconfig(fs.as_fd(), FSCONFIG_SET_STRING as u32, Some(k), Some(v), 0)
                }
                None => sys.fsconfig(fs.as_fd(), FSCONFIG_SET_FLAG as u32, Some(opt), None, 0),
            }
            .with_context(|| format!("option {opt}"))?;
        }
        sys.fsconfig(fs.as_fd(), FSCONFIG_CMD_CREATE as u32, None, None, 0)
            .context("create the filesystem")?;
        sys.fsmount(fs.as_fd(), 0, None).context("fsmount")?
    };
    setattr(sys, tree.as_fd(), 0, &attr_of(cfg.flags))?;
    if let Some(rec) = &cfg.rec_attr {
        setattr(sys, tree.as_fd(), AT_RECURSIVE, rec)?;
    }
    let file = bind && {
        let st = nix::sys::stat::fstat(&tree).context("stat the source")?;
        st.st_mode & libc::S_IFMT != libc::S_IFDIR
    };
    let target = if file {
        root.touch(dest)?
    } else {
        root.mkdir_all(dest)?
    };
    sys.move_mount(
        tree.as_fd(),
        None,
        target.as_fd(),
        None,
        MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
    )
    .context("move_mount")?;
    if let Some((propagation, recursive)) = propagation_of(m) {
        // The destination now resolves to the new mount's root.
        let mounted = root.resolve(dest).context("resolve the new mount")?;
        let attr = MountAttr {
            attr_set: 0,
            attr_clr: 0,
            propagation: propagation.bits(),
            userns_fd: 0,
        };
        let rec = if recursive { AT_RECURSIVE } else { 0 };
        setattr(sys, mounted.as_fd(), rec, &attr).context("set the mount's propagation")?;
    }
    Ok(())
}

/// The propagation a mount's options ask for (the last one given) and
/// whether recursively. libcontainer's option parser clears these flags
/// instead of setting them, so they are read here.
fn propagation_of(m: &Mount) -> Option<(MsFlags, bool)> {
    m.options()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|o| {
            let (recursive, kind) = match o.strip_prefix('r') {
                Some(k @ ("private" | "slave" | "shared" | "unbindable")) => (true, k),
                _ => (false, o.as_str()),
            };
            let flag = match kind {
                "private" => MsFlags::MS_PRIVATE,
                "slave" => MsFlags::MS_SLAVE,
                "shared" => MsFlags::MS_SHARED,
                "unbindable" => MsFlags::MS_UNBINDABLE,
                _ => return None,
            };
            Some((flag, recursive))
        })
        .next_back()
}

fn mount_spec(dest: PathBuf, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    use libcontainer::oci_spec::runtime::MountBuilder;
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .context("build a mount")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn relative_paths_never_climb_above_the_root() {
        assert_eq!(relative(Path::new("/a/b")), PathBuf::from("a/b"));
        assert_eq!(relative(Path::new("/../../etc")), PathBuf::from("etc"));
        assert_eq!(relative(Path::new("/a/./b/../c")), PathBuf::from("a/c"));
        assert_eq!(relative(Path::new("/")), PathBuf::new());
    }

    #[test]
    fn propagation_options_are_read() {
        use libcontainer::oci_spec::runtime::MountBuilder;
        let m = |opts: &[&str]| {
            MountBuilder::default()
                .destination("/x")
                .options(opts.iter().map(|o| o.to_string()).collect::<Vec<_>>())
                .build()
                .unwrap()
        };
        assert_eq!(
            propagation_of(&m(&["rbind", "rprivate"])),
            Some((MsFlags::MS_PRIVATE, true))
        );
        assert_eq!(
            propagation_of(&m(&["rslave", "ro"])),
            Some((MsFlags::MS_SLAVE, true))
        );
        assert_eq!(
            propagation_of(&m(&["shared"])),
            Some((MsFlags::MS_SHARED, false))
        );
        assert_eq!(
            propagation_of(&m(&["private", "rshared"])),
            Some((MsFlags::MS_SHARED, true))
        );
        assert_eq!(propagation_of(&m(&["rbind", "rw"])), None);
        // libcontainer's parser drops them: why they are read here.
        assert!(
            !parse_mount(&m(&["rslave"]))
                .unwrap()
                .flags
                .contains(MsFlags::MS_SLAVE)
        );
    }

    #[test]
    fn atime_modes_clear_the_atime_field() {
        let a = attr_of(MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(a.attr_set, MOUNT_ATTR_NOSUID | MOUNT_ATTR_STRICTATIME);
        assert_eq!(a.attr_clr, MOUNT_ATTR__ATIME);
        let b = attr_of(MsFlags::MS_RDONLY | MsFlags::MS_NODEV);
        assert_eq!(b.attr_set, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV);
        assert_eq!(b.attr_clr, 0);
    }

    #[test]
    fn destinations_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        // An image's symlink pointing out of the root.
        std::os::unix::fs::symlink("/../../..", rootfs.join("escape")).unwrap();
        std::os::unix::fs::symlink("/etc", rootfs.join("etclink")).unwrap();
        let root = Root::open(&rootfs).unwrap();
        root.mkdir_all(Path::new("/escape/x/y")).unwrap();
        assert!(rootfs.join("x/y").is_dir(), "created inside the root");
        root.touch(Path::new("/etclink/hosts")).unwrap();
        assert!(rootfs.join("etc/hosts").is_file());
        assert!(!dir.path().join("x").exists());
    }

    /// The plan for a spec's mounts, through libcontainer's syscall test
    /// double (records, mounts nothing; no root needed): which calls, in
    /// which order, with which flags, onto which destination.
    #[test]
    fn mount_plans_through_the_syscall_double() {
        use libcontainer::oci_spec::runtime::MountBuilder;
        use libcontainer::syscall::syscall::SyscallType;
        use libcontainer::syscall::test::TestHelperSyscall;

        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(&rootfs).unwrap();
        std::os::unix::fs::symlink("/../../..", rootfs.join("escape")).unwrap();
        let root = Root::open(&rootfs).unwrap();
        let sys = SyscallType::Test.create_syscall();
        let double = sys.as_any().downcast_ref::<TestHelperSyscall>().unwrap();
        let mount = |dest: &str, typ: &str, source: &str, opts: &[&str]| {
            MountBuilder::default()
                .destination(dest)
                .typ(typ)
                .source(source)
                .options(opts.iter().map(|o| o.to_string()).collect::<Vec<_>>())
                .build()
                .unwrap()
        };

        // A read-only, recursive, rslave volume through an escaping link.
        let vol = mount(
            "/escape/data",
            "bind",
            "/srv/data",
            &["rbind", "ro", "nosuid", "rslave"],
        );
        setup_mount(sys.as_ref(), &root, &vol, false, "").unwrap();
        let trees = double.get_open_tree_args();
        assert_eq!(trees.len(), 1);
        assert_eq!(trees[0].path.as_deref(), Some("/srv/data"));
        assert!(trees[0].flags & libc::OPEN_TREE_CLONE != 0);
        assert!(trees[0].flags & libc::AT_RECURSIVE as u32 != 0);
        let attrs = double.get_mount_setattr_args();
        assert_eq!(attrs.len(), 2, "flags, then propagation: {attrs:?}");
        assert_eq!(attrs[0].attr_set, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID);
        assert_eq!(attrs[1].propagation, MsFlags::MS_SLAVE.bits());
        assert!(attrs[1].flags & AT_RECURSIVE != 0);
        let moves = double.get_move_mount_args();
        assert_eq!(moves.len(), 1);
        // The double's source is /dev/null, a file: the destination is a
        // file made inside the root, never outside it.
        assert_eq!(
            moves[0].to_dirfd_path.as_deref(),
            Some(rootfs.join("data").as_path())
        );
        assert!(!dir.path().join("data").exists());

        // A tmpfs: fsopen, its source and options, create, mount, move.
        let tmp = mount(
            "/run/x",
            "tmpfs",
            "tmpfs",
            &["nosuid", "size=65536k", "mode=755"],
        );
        setup_mount(sys.as_ref(), &root, &tmp, false, "").unwrap();
        let opened = double.get_fsopen_args();
        assert_eq!(opened[0].fsname.as_deref(), Some("tmpfs"));
        let config: Vec<(Option<String>, Option<String>)> = double
            .get_fsconfig_args()
            .into_iter()
            .map(|a| (a.key, a.val))
            .collect();
        assert_eq!(
            config,
            vec![
                (Some("source".into()), Some("tmpfs".into())),
                (Some("size".into()), Some("65536k".into())),
                (Some("mode".into()), Some("755".into())),
                (None, None),
            ]
        );
        assert_eq!(double.get_fsmount_args().len(), 1);
        let moves = double.get_move_mount_args();
        assert_eq!(
            moves[1].to_dirfd_path.as_deref(),
            Some(rootfs.join("run/x").as_path())
        );
        assert!(rootfs.join("run/x").is_dir());

        // proc elsewhere than /proc is refused before any call.
        let bad = mount("/etc/proc", "proc", "proc", &[]);
        let e = setup_mount(sys.as_ref(), &root, &bad, false, "").unwrap_err();
        assert!(e.to_string().contains("/proc"), "{e}");
        assert_eq!(double.get_fsopen_args().len(), 1);
    }
}
