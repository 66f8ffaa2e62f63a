//! Idmapped mounts (mount_setattr(2) with MOUNT_ATTR_IDMAP) for the
//! containers of a pod with a user namespace of its own: image layers and
//! volumes show their files' on-disk ids shifted by the pod's mappings, so
//! the pod's root sees the image's root-owned files as its own and what it
//! writes lands on disk as the ids it sees inside — without chowning a
//! layer. berthd makes them on the host, through the pod's pinned user
//! namespace (the kernel lets only a process privileged over the
//! filesystem's owner make one, which a container's init no longer is once
//! it joined the pod's namespace), and the runtime binds them as plain
//! mounts: libcontainer 0.7 refuses OCI mounts with mappings, and runc
//! gained them only in 1.2.
//!
//! What the kernel here (6.18) accepts, probed: an overlay mount itself
//! cannot be idmapped (EINVAL: overlayfs does not allow it), but overlayfs
//! accepts idmapped layers. An idmapped *upper* layer does not work for
//! berthd's mount: overlayfs creates its work directories with the
//! mounter's ids, and the host's root is unmapped there (EOVERFLOW, the
//! overlay falls back to read-only). So the lower layers are idmapped and
//! the upper stays plain, its root owned by the pod's root: a copy-up
//! keeps the ids the idmapped lower shows, so the container's files land
//! on disk as the pod's host ids, in the container's own upper only.
//! The layers are passed to overlayfs as `/proc/self/fd/N` of detached
//! idmapped trees: the overlay keeps them, and no mount is left to undo.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The pod's user namespace, opened: what idmapped mounts map through.
#[derive(Debug)]
pub struct Idmap {
    userns: OwnedFd,
    /// The host uid and gid of the pod's root.
    pub root: (u32, u32),
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

impl Idmap {
    /// Opens the user namespace pinned at `path`; `root` is the host uid
    /// and gid of its id 0.
    pub fn open(path: &Path, root: (u32, u32)) -> io::Result<Idmap> {
        let f = std::fs::File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Idmap {
            userns: f.into(),
            root,
        })
    }

    /// A detached copy of the mount tree at `src` (with its submounts when
    /// `recursive`), idmapped through the pod's user namespace.
    pub fn tree(&self, src: &Path, recursive: bool) -> io::Result<OwnedFd> {
        let path = cpath(src)?;
        let rec = if recursive { libc::AT_RECURSIVE } else { 0 };
        let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | rec as u32;
        // SAFETY: open_tree with a NUL-terminated path; the returned
        // descriptor is owned below.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                path.as_ptr(),
                flags as libc::c_uint,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("open_tree {}: {e}", src.display()),
            ));
        }
        // SAFETY: a new descriptor nothing else owns.
        let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let attr = libc::mount_attr {
            attr_set: libc::MOUNT_ATTR_IDMAP,
            attr_clr: 0,
            propagation: 0,
            userns_fd: self.userns.as_raw_fd() as u64,
        };
        // SAFETY: mount_setattr on the tree's descriptor (AT_EMPTY_PATH
        // with an empty path) with a mount_attr of the size passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                c"".as_ptr(),
                (libc::AT_EMPTY_PATH | rec) as libc::c_uint,
                &attr as *const libc::mount_attr,
                std::mem::size_of::<libc::mount_attr>(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "idmapping {} (the kernel or its filesystem may not support idmapped mounts): {e}",
                    src.display()
                ),
            ));
        }
        Ok(tree)
    }
}

/// Attaches a detached tree at `target` (which must exist).
pub fn attach(tree: &OwnedFd, target: &Path) -> io::Result<()> {
    let to = cpath(target)?;
    // SAFETY: move_mount from the tree's descriptor (empty path) to a
    // NUL-terminated path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH as libc::c_uint,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("attaching an idmapped mount at {}: {e}", target.display()),
        ));
    }
    Ok(())
}

/// Makes the spec's idmapped mounts (OCI mounts with uid and gid
/// mappings, the pod's: berth-spec allows no others) on the host: each
/// source, idmapped, attached at `<staging>/<n>`, becomes a plain bind of
/// that. Unmounted with the rootfs ([`unmount_staged`]).
pub fn stage_volumes(
    spec: &mut oci_spec::runtime::Spec,
    idmap: Option<&Idmap>,
    staging: &Path,
) -> io::Result<()> {
    let Some(mounts) = spec.mounts_mut().as_mut() else {
        return Ok(());
    };
    for (n, m) in mounts.iter_mut().enumerate() {
        if m.uid_mappings().is_none() && m.gid_mappings().is_none() {
            continue;
        }
        let Some(idmap) = idmap else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "idmapped mount at {} without the pod's user namespace",
                    m.destination().display()
                ),
            ));
        };
        let src = m.source().clone().unwrap_or_default();
        let recursive = m
            .options()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|o| o == "rbind");
        let tree = idmap.tree(&src, recursive)?;
        std::fs::create_dir_all(staging)?;
        let target = staging.join(n.to_string());
        if std::fs::metadata(&src)?.is_dir() {
            std::fs::create_dir(&target)?;
        } else {
            std::fs::File::create(&target)?;
        }
        attach(&tree, &target)?;
        m.set_source(Some(target));
        m.set_uid_mappings(None);
        m.set_gid_mappings(None);
    }
    Ok(())
}

/// Unmounts what [`stage_volumes`] attached under `staging`; none is fine.
pub fn unmount_staged(staging: &Path) -> io::Result<()> {
    let Ok(entries) = std::fs::read_dir(staging) else {
        return Ok(());
    };
    for e in entries.flatten() {
        match nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(err) => {
                return Err(io::Error::new(
                    io::Error::from(err).kind(),
                    format!("unmounting {}: {err}", e.path().display()),
                ));
            }
        }
    }
    Ok(())
}

/// The path through which this process reaches a descriptor's file (what
/// overlayfs is given for an idmapped layer).
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_reached_through_proc_self() {
        let f: OwnedFd = std::fs::File::open("/").unwrap().into();
        let p = fd_path(&f);
        assert!(p.starts_with("/proc/self/fd/"));
        assert_eq!(
            std::fs::canonicalize(&p).unwrap(),
            PathBuf::from("/"),
            "{}",
            p.display()
        );
        assert!(cpath(Path::new("a\0b")).is_err());
    }
}
