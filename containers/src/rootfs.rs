//! A container's root filesystem: an overlay of its image's snapshot chain
//! (read-only lower dirs) with its own upper and work dirs, all under
//! `<root>/containers/<id>/`; and its image volumes (KEP-4639), read-only
//! overlays of other images' chains mounted beside it and undone with it.

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
    /// Image volumes, each a read-only overlay mounted at `<n>` here for
    /// the runtime to bind (`empty` is the bottom layer of a one-layer
    /// image: overlayfs needs two lower dirs when it has no upper).
    pub fn image_volumes(&self) -> PathBuf {
        self.dir.join("image-volumes")
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
    let lower = lower_list(lowers)?;
    let data = format!(
        "lowerdir={lower},upperdir={},workdir={},index=off",
        upper.display(),
        work.display()
    );
    fit_in_page(data, lowers.len())
}

/// The mount data of a read-only overlay of `lowers` (topmost first) with
/// no upper dir: an image volume. overlayfs wants at least two lower dirs
/// then; the caller adds an empty one below a single layer.
pub fn readonly_overlay_options(lowers: &[PathBuf]) -> io::Result<String> {
    if lowers.len() < 2 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a read-only overlay needs two lower dirs",
        ));
    }
    let data = format!("lowerdir={}", lower_list(lowers)?);
    fit_in_page(data, lowers.len())
}

fn fit_in_page(data: String, layers: usize) -> io::Result<String> {
    if data.len() >= 4096 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "overlay options for {layers} layers exceed a page ({} bytes)",
                data.len()
            ),
        ));
    }
    Ok(data)
}

/// `lowers` joined with ':' for `lowerdir=`, each checked.
fn lower_list(lowers: &[PathBuf]) -> io::Result<String> {
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
    Ok(lower)
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

/// Mounts each image volume (its layers' snapshot dirs, topmost first)
/// read-only at `<dir>/image-volumes/<n>`, n its place in `volumes`, and
/// returns those paths. An overlay without an upper dir: nothing in the
/// container can write to it, whatever the mount's `readonly` said, and
/// whiteouts and opaque dirs read as in the image. With `idmap` its layers
/// are idmapped as the rootfs' are, so the pod's root owns what the
/// image's root owns. Undone by [`unmount`] with the rootfs, also after a
/// partial failure here.
pub fn mount_image_volumes(
    layout: &Layout,
    volumes: &[Vec<PathBuf>],
    idmap: Option<&Idmap>,
) -> io::Result<Vec<PathBuf>> {
    if volumes.is_empty() {
        return Ok(Vec::new());
    }
    let dir = layout.image_volumes();
    let empty = dir.join("empty");
    fs::create_dir_all(&empty)?;
    let mut targets = Vec::with_capacity(volumes.len());
    for (n, lowers) in volumes.iter().enumerate() {
        let target = dir.join(n.to_string());
        fs::create_dir(&target)?;
        let mut lowers = lowers.clone();
        if lowers.len() == 1 {
            lowers.push(empty.clone());
        }
        // Held until the overlay is mounted, as in mount_rootfs.
        let mut trees = Vec::new();
        if let Some(m) = idmap {
            for l in &lowers {
                trees.push(m.tree(l, false)?);
            }
            lowers = trees.iter().map(idmap::fd_path).collect();
        }
        let data = readonly_overlay_options(&lowers)?;
        mount(
            Some("overlay"),
            &target,
            Some("overlay"),
            MsFlags::MS_RDONLY,
            Some(data.as_str()),
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("mounting image volume {}: {e}", target.display()),
            )
        })?;
        targets.push(target);
    }
    Ok(targets)
}

/// Unmounts the rootfs, idmapped volumes and image volumes; what is not
/// mounted (or gone) is fine.
pub fn unmount(layout: &Layout) -> io::Result<()> {
    idmap::unmount_staged(&layout.idmapped())?;
    idmap::unmount_staged(&layout.image_volumes())?;
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
    fn image_volumes_are_overlays_without_upper() {
        let o = readonly_overlay_options(&[PathBuf::from("/s/b"), PathBuf::from("/s/a")]).unwrap();
        assert_eq!(o, "lowerdir=/s/b:/s/a");
        // overlayfs refuses one lower dir without an upper: the caller
        // adds an empty one.
        assert!(readonly_overlay_options(&[PathBuf::from("/s/a")]).is_err());
        assert!(
            readonly_overlay_options(&[PathBuf::from("/s/a,upperdir=/x"), PathBuf::from("/e")])
                .is_err()
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
