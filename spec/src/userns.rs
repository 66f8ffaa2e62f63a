//! The container's user namespace: the pod's, when the pod has one
//! (`userns_options.mode = POD` in the config RunPodSandbox received; its
//! mappings were checked then). The container joins it by its pinned path
//! and carries its mappings in `linux.uidMappings`/`gidMappings`, as
//! containerd writes them (runc reads them; the path decides). A
//! container's own `userns_options` must agree with its pod's, its user
//! and groups must be ids the mappings cover, and a CRI mount may be
//! idmapped (`uid_mappings`/`gid_mappings`, kubelet's volumes) only with
//! the pod's own mappings: berth maps volumes through the pod's namespace.

use std::path::PathBuf;

use k8s_cri::v1::{
    IdMapping, LinuxContainerSecurityContext, Mount as CriMount, NamespaceMode, PodSandboxConfig,
    UserNamespace,
};
use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder};

use crate::Sandbox;
use crate::error::SpecError;

/// An idmapped mount's uid and gid mappings.
pub(crate) type MountMappings = (Vec<LinuxIdMapping>, Vec<LinuxIdMapping>);

/// The user namespace a container joins.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UserNs {
    /// The pod's pinned namespace.
    pub path: PathBuf,
    pub uids: Vec<LinuxIdMapping>,
    pub gids: Vec<LinuxIdMapping>,
}

fn oci(maps: &[IdMapping]) -> Result<Vec<LinuxIdMapping>, SpecError> {
    maps.iter()
        .map(|m| {
            LinuxIdMappingBuilder::default()
                .container_id(m.container_id)
                .host_id(m.host_id)
                .size(m.length)
                .build()
                .map_err(|e| SpecError::UserNamespace(format!("mapping {m:?}: {e}")))
        })
        .collect()
}

fn pod_options(sandbox_config: &PodSandboxConfig) -> Option<&UserNamespace> {
    sandbox_config
        .linux
        .as_ref()?
        .security_context
        .as_ref()?
        .namespace_options
        .as_ref()?
        .userns_options
        .as_ref()
}

fn is_node(u: Option<&UserNamespace>) -> bool {
    u.is_none_or(|u| u.mode == NamespaceMode::Node as i32)
}

fn disagree(why: &str) -> SpecError {
    SpecError::UserNamespace(format!(
        "the container's userns_options must agree with its pod's: {why}"
    ))
}

/// The user namespace of a container of `sandbox`, if its pod has one.
pub(crate) fn userns(
    sandbox: &Sandbox,
    sc: Option<&LinuxContainerSecurityContext>,
    sandbox_config: &PodSandboxConfig,
) -> Result<Option<UserNs>, SpecError> {
    let pod = pod_options(sandbox_config).filter(|u| !is_node(Some(u)));
    let container = sc
        .and_then(|s| s.namespace_options.as_ref())
        .and_then(|n| n.userns_options.as_ref());
    let Some(pod) = pod else {
        if !is_node(container) {
            return Err(disagree("the pod uses the node's user namespace"));
        }
        return Ok(None);
    };
    if let Some(c) = container {
        if c.mode != pod.mode {
            return Err(disagree("a different mode"));
        }
        if c.uids != pod.uids || c.gids != pod.gids {
            return Err(disagree("different mappings"));
        }
    }
    let path = sandbox.user_ns.clone().ok_or_else(|| {
        SpecError::io(
            "the pod's user namespace",
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the pod has no pinned user namespace",
            ),
        )
    })?;
    Ok(Some(UserNs {
        path,
        uids: oci(&pod.uids)?,
        gids: oci(&pod.gids)?,
    }))
}

fn covers(maps: &[LinuxIdMapping], id: u32) -> bool {
    maps.iter().any(|m| {
        id.checked_sub(m.container_id())
            .is_some_and(|off| off < m.size())
    })
}

impl UserNs {
    /// The process's ids must exist in the namespace: an unmapped one
    /// would fail in the runtime's setuid, far from the request.
    pub(crate) fn check_ids(&self, uid: u32, gid: u32, groups: &[u32]) -> Result<(), SpecError> {
        if !covers(&self.uids, uid) {
            return Err(SpecError::UserNamespace(format!(
                "uid {uid} is not mapped in the pod's user namespace"
            )));
        }
        for g in std::iter::once(&gid).chain(groups) {
            if !covers(&self.gids, *g) {
                return Err(SpecError::UserNamespace(format!(
                    "gid {g} is not mapped in the pod's user namespace"
                )));
            }
        }
        Ok(())
    }

    /// The idmapping of a CRI mount: none, or the pod's own.
    pub(crate) fn mount_mappings(
        this: Option<&UserNs>,
        m: &CriMount,
    ) -> Result<Option<MountMappings>, SpecError> {
        if m.uid_mappings.is_empty() && m.gid_mappings.is_empty() {
            return Ok(None);
        }
        let Some(ns) = this else {
            return Err(SpecError::Unsupported(format!(
                "idmapped mount at {:?} in a pod without a user namespace",
                m.container_path
            )));
        };
        let (uids, gids) = (oci(&m.uid_mappings)?, oci(&m.gid_mappings)?);
        if uids != ns.uids || gids != ns.gids {
            return Err(SpecError::InvalidMount {
                container_path: m.container_path.clone(),
                reason: "its uid and gid mappings must be the pod's user namespace's".into(),
            });
        }
        Ok(Some((uids, gids)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::{LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption};

    fn map(host_id: u32) -> Vec<IdMapping> {
        vec![IdMapping {
            host_id,
            container_id: 0,
            length: 65536,
        }]
    }

    fn options(mode: NamespaceMode, host_id: u32) -> UserNamespace {
        UserNamespace {
            mode: mode as i32,
            uids: map(host_id),
            gids: map(host_id),
        }
    }

    fn pod(u: Option<UserNamespace>) -> PodSandboxConfig {
        PodSandboxConfig {
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        userns_options: u,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container(u: Option<UserNamespace>) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            namespace_options: Some(NamespaceOption {
                userns_options: u,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sandbox(user_ns: Option<&str>) -> Sandbox {
        Sandbox {
            netns: None,
            ipc_ns: None,
            uts_ns: None,
            user_ns: user_ns.map(PathBuf::from),
            pid: crate::PidNs::Container,
            hostname: "h".into(),
            hostname_file: None,
            hosts_file: None,
            resolv_conf: None,
            shm: None,
        }
    }

    #[test]
    fn a_pod_with_a_user_namespace_is_joined_with_its_mappings() {
        let sb = sandbox(Some("/run/berth/pods/p/user"));
        let p = pod(Some(options(NamespaceMode::Pod, 200_000)));
        // The container repeating the pod's options, or saying nothing.
        for sc in [
            Some(container(Some(options(NamespaceMode::Pod, 200_000)))),
            None,
        ] {
            let u = userns(&sb, sc.as_ref(), &p).unwrap().unwrap();
            assert_eq!(u.path, PathBuf::from("/run/berth/pods/p/user"));
            assert_eq!(u.uids.len(), 1);
            assert_eq!(
                (
                    u.uids[0].container_id(),
                    u.uids[0].host_id(),
                    u.uids[0].size()
                ),
                (0, 200_000, 65536)
            );
            assert_eq!(u.gids, u.uids);
        }
    }

    #[test]
    fn a_container_must_agree_with_its_pod() {
        let sb = sandbox(Some("/p/user"));
        let with = pod(Some(options(NamespaceMode::Pod, 200_000)));
        let without = pod(None);
        let node = pod(Some(options(NamespaceMode::Node, 0)));
        let cases = [
            (&with, Some(options(NamespaceMode::Node, 0))),
            (&with, Some(options(NamespaceMode::Pod, 300_000))),
            (&without, Some(options(NamespaceMode::Pod, 200_000))),
            (&node, Some(options(NamespaceMode::Pod, 200_000))),
        ];
        for (p, c) in cases {
            let e = userns(&sb, Some(&container(c)), p).unwrap_err();
            assert!(e.is_invalid_argument(), "{e}");
            assert!(e.to_string().contains("agree with its pod"), "{e}");
        }
        assert_eq!(userns(&sb, None, &without).unwrap(), None);
        assert_eq!(userns(&sb, None, &node).unwrap(), None);
        let e = userns(&sandbox(None), None, &with).unwrap_err();
        assert!(!e.is_invalid_argument(), "berth's state, not the request");
    }

    #[test]
    fn ids_and_mounts_must_fit_the_mappings() {
        let sb = sandbox(Some("/p/user"));
        let u = userns(&sb, None, &pod(Some(options(NamespaceMode::Pod, 200_000))))
            .unwrap()
            .unwrap();
        assert!(u.check_ids(0, 0, &[]).is_ok());
        assert!(u.check_ids(1000, 1000, &[65535]).is_ok());
        assert!(
            u.check_ids(65536, 0, &[])
                .unwrap_err()
                .to_string()
                .contains("uid 65536")
        );
        assert!(
            u.check_ids(0, 0, &[70000])
                .unwrap_err()
                .to_string()
                .contains("gid 70000")
        );

        let mut m = CriMount {
            container_path: "/data".into(),
            host_path: "/srv".into(),
            ..Default::default()
        };
        assert_eq!(UserNs::mount_mappings(Some(&u), &m).unwrap(), None);
        m.uid_mappings = map(200_000);
        m.gid_mappings = map(200_000);
        let (uids, gids) = UserNs::mount_mappings(Some(&u), &m).unwrap().unwrap();
        assert_eq!((uids, gids), (u.uids.clone(), u.gids.clone()));
        let e = UserNs::mount_mappings(None, &m).unwrap_err();
        assert!(e.is_invalid_argument() && e.to_string().contains("without a user namespace"));
        m.gid_mappings = map(300_000);
        let e = UserNs::mount_mappings(Some(&u), &m).unwrap_err();
        assert!(
            e.is_invalid_argument() && e.to_string().contains("/data"),
            "{e}"
        );
        m.gid_mappings.clear();
        assert!(UserNs::mount_mappings(Some(&u), &m).is_err());
    }
}
