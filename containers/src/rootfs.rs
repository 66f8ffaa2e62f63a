//! A container's root filesystem: an overlay of its image's snapshot chain
//! (read-only lower dirs) with its own upper and work dirs, all under
//! `<root>/containers/<id>/`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::idmap::{self, Idmap};

/// The directories of one container.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(containers_root: &Path, id: &str) -> Layout {
        Layout {
            dir: containers_root.join(id),
        }
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    /// Idmapped volumes of a container in a user-namespaced pod, attached
    /// here for the runtime to bind (idmap.rs).
    pub fn idmapped(&self) -> PathBuf {
        self.dir.join("idmapped")
    }
    /// The OCI bundle: config.json, and the runtime's log and pid file.
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }
}

/// The overlay mount data for `lowers` (topmost first). The kernel takes at
/// most a page of options: long chains of long paths are refused here with
/// a clear error rather than by mount(2) with EINVAL.
pub fn overlay_options(lowers: &[PathBuf], upper: &Path, work: &Path) -> io::Result<String> {
    if lowers.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "image has no layers",
        ));
    }
    let mut lower = String::new();
    for (i, l) in lowers.iter().enumerate() {
        let s = l.to_str().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "non-UTF-8 snapshot path")
        })?;
        if s.contains([',', ':']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("snapshot path {s:?} contains ',' or ':'"),
            ));
        }
        if i > 0 {
            lower.push(':');
        }
        lower.push_str(s);
    }
    let data = format!(
        "lowerdir={lower},upperdir={},workdir={},index=off",
        upper.display(),
        work.display()
    );
    if data.len() >= 4096 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "overlay options for {} layers exceed a page ({} bytes)",
                lowers.len(),
                data.len()
            ),
        ));
    }
    Ok(data)
}

/// Creates the container's dirs and mounts its rootfs. With `idmap` (a
/// pod with its own user namespace) the layers are idmapped through it
/// and the upper dir is its root's (see idmap.rs for why not the overlay).
pub fn mount_rootfs(layout: &Layout, lowers: &[PathBuf], idmap: Option<&Idmap>) -> io::Result<()> {
    for d in [
        layout.upper(),
        layout.work(),
        layout.rootfs(),
        layout.bundle(),
    ] {
        fs::create_dir_all(&d)?;
    }
    // Held until the overlay is mounted: it keeps the layers it was given.
    let mut trees = Vec::new();
    let lowers: Vec<PathBuf> = match idmap {
        None => lowers.to_vec(),
        Some(m) => {
            for l in lowers {
                trees.push(m.tree(l, false)?);
            }
            let (uid, gid) = m.root;
            std::os::unix::fs::chown(layout.upper(), Some(uid), Some(gid))?;
            trees.iter().map(idmap::fd_path).collect()
        }
    };
    let data = overlay_options(&lowers, &layout.upper(), &layout.work())?;
    mount(
        Some("overlay"),
        &layout.rootfs(),
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("mounting overlay: {e}")))
}

/// Unmounts the rootfs and idmapped volumes; what is not mounted (or
/// gone) is fine.
pub fn unmount(layout: &Layout) -> io::Result<()> {
    idmap::unmount_staged(&layout.idmapped())?;
    let rootfs = layout.rootfs();
    match umount2(&rootfs, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(io::Error::new(
            io::Error::from(e).kind(),
            format!("unmounting {}: {e}", rootfs.display()),
        )),
    }
}

/// Unmounts the rootfs (if mounted) and deletes everything of the
/// container. Safe to call on a partially created container.
pub fn remove(layout: &Layout) -> io::Result<()> {
    unmount(layout)?;
    match fs::remove_dir_all(&layout.dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_list_lowers_topmost_first() {
        let o = overlay_options(
            &[PathBuf::from("/s/b"), PathBuf::from("/s/a")],
            Path::new("/c/upper"),
            Path::new("/c/work"),
        )
        .unwrap();
        assert_eq!(
            o,
            "lowerdir=/s/b:/s/a,upperdir=/c/upper,workdir=/c/work,index=off"
        );
    }

    #[test]
    fn unusable_chains_are_refused() {
        let u = Path::new("/u");
        assert!(overlay_options(&[], u, u).is_err());
        assert!(overlay_options(&[PathBuf::from("/a:b")], u, u).is_err());
        let long: Vec<PathBuf> = (0..100)
            .map(|i| PathBuf::from(format!("/var/lib/berth/snapshots/{i:064}/fs")))
            .collect();
        let e = overlay_options(&long, u, u).unwrap_err();
        assert!(e.to_string().contains("exceed a page"), "{e}");
    }
}
