//! Image volumes (KEP-4639, Kubernetes `volumes[].image`): a CRI mount
//! whose `image` names an image. berthd resolves and leases the image
//! (`cri/src/leases.rs`: one lease with the container's own image, so
//! RemoveImage takes its names and its layers stay until the container
//! goes); the create mounts a read-only overlay of its layers under the
//! container's directory (`rootfs::mount_image_volumes`, idmapped in a
//! user-namespaced pod) and the spec binds that. Undone with the rootfs.

use std::path::PathBuf;

use crate::error::RuntimeError;

/// An image volume (a CRI mount with `image` set, KEP-4639), its image
/// resolved and leased by the caller.
#[derive(Debug, Clone)]
pub struct ImageVolume {
    /// The mount's place in the config's `mounts`.
    pub mount: usize,
    /// The image's overlay lower dirs, topmost first.
    pub lowers: Vec<PathBuf>,
}

/// Whether a CRI mount is an image volume: its `image` names one. Its
/// `host_path` is then ignored (kubelet leaves it empty).
pub fn is_image_volume(m: &k8s_cri::v1::Mount) -> bool {
    m.image.as_ref().is_some_and(|i| !i.image.is_empty())
}

/// The mounts the OCI spec is generated from: each image volume becomes a
/// read-only private bind of its overlay, staged at `staged[n]` for the
/// n-th image volume in `mounts`' order, with no idmapping of its own
/// (in a user-namespaced pod its layers are idmapped already; an overlay
/// cannot be idmapped itself). Other mounts are unchanged.
pub fn with_image_volumes(
    mounts: &[k8s_cri::v1::Mount],
    staged: &[PathBuf],
) -> Result<Vec<k8s_cri::v1::Mount>, RuntimeError> {
    let mut staged = staged.iter();
    let out = mounts
        .iter()
        .map(|m| {
            if !is_image_volume(m) {
                return Ok(m.clone());
            }
            let src = staged.next().ok_or_else(|| {
                RuntimeError::ImageVolumes(format!("{:?} was not mounted", m.container_path))
            })?;
            Ok(k8s_cri::v1::Mount {
                host_path: src.display().to_string(),
                readonly: true,
                propagation: k8s_cri::v1::MountPropagation::PropagationPrivate as i32,
                uid_mappings: Vec::new(),
                gid_mappings: Vec::new(),
                image: None,
                ..m.clone()
            })
        })
        .collect::<Result<Vec<_>, RuntimeError>>()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_volumes_become_read_only_private_binds_of_their_overlays() {
        use k8s_cri::v1::{IdMapping, ImageSpec, Mount, MountPropagation};
        let image = |name: &str| {
            Some(ImageSpec {
                image: name.into(),
                ..Default::default()
            })
        };
        let ids = vec![IdMapping {
            host_id: 100_000,
            container_id: 0,
            length: 65536,
        }];
        let mounts = vec![
            Mount {
                container_path: "/data".into(),
                host_path: "/srv/data".into(),
                ..Default::default()
            },
            Mount {
                container_path: "/img".into(),
                host_path: "/etc".into(),
                image: image("registry/tools:v1"),
                readonly: false,
                propagation: MountPropagation::PropagationBidirectional as i32,
                uid_mappings: ids.clone(),
                gid_mappings: ids,
                ..Default::default()
            },
            // An empty image name is no image volume.
            Mount {
                container_path: "/empty".into(),
                host_path: "/srv/empty".into(),
                image: image(""),
                ..Default::default()
            },
            Mount {
                container_path: "/img2".into(),
                image: image("sha256:abcd"),
                readonly: true,
                ..Default::default()
            },
        ];
        assert_eq!(
            mounts.iter().map(is_image_volume).collect::<Vec<_>>(),
            [false, true, false, true]
        );
        let staged = [
            PathBuf::from("/c/image-volumes/0"),
            PathBuf::from("/c/image-volumes/1"),
        ];
        let out = with_image_volumes(&mounts, &staged).unwrap();
        assert_eq!(out[0], mounts[0]);
        assert_eq!(out[2], mounts[2]);
        for (m, src) in [(&out[1], &staged[0]), (&out[3], &staged[1])] {
            assert_eq!(m.host_path, src.display().to_string());
            assert!(m.readonly && m.image.is_none());
            assert_eq!(m.propagation, MountPropagation::PropagationPrivate as i32);
            assert!(m.uid_mappings.is_empty() && m.gid_mappings.is_empty());
        }
        assert_eq!(out[1].container_path, "/img");
        // Fewer staged mounts than image volumes: berthd's own mistake.
        let e = with_image_volumes(&mounts, &staged[..1]).unwrap_err();
        assert!(matches!(e, RuntimeError::ImageVolumes(_)), "{e}");
    }
}
