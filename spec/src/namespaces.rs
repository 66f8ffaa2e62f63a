//! Namespaces: a new mount namespace; pid per the sandbox (new, join, host);
//! network/ipc/uts joined from the pod's pinned namespaces, or absent (the
//! host's); a new cgroup namespace on cgroup v2 unless privileged
//! (containerd). User namespaces are not supported.

use k8s_cri::v1::{LinuxContainerSecurityContext, NamespaceMode, PodSandboxConfig};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use crate::error::SpecError;
use crate::{PidNs, Sandbox};

fn ns(typ: LinuxNamespaceType, path: Option<&std::path::Path>) -> LinuxNamespace {
    let mut n = LinuxNamespace::default();
    n.set_typ(typ);
    n.set_path(path.map(|p| p.to_path_buf()));
    n
}

/// Rejects user namespaces (asked by the sandbox or the container).
fn check_userns(
    sc: Option<&LinuxContainerSecurityContext>,
    sandbox_config: &PodSandboxConfig,
) -> Result<(), SpecError> {
    let container = sc
        .and_then(|s| s.namespace_options.as_ref())
        .and_then(|n| n.userns_options.as_ref());
    let pod = sandbox_config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .and_then(|n| n.userns_options.as_ref());
    for u in [container, pod].into_iter().flatten() {
        if u.mode != NamespaceMode::Node as i32 {
            return Err(SpecError::Unsupported(
                "user namespaces (hostUsers: false)".into(),
            ));
        }
    }
    Ok(())
}

/// The namespaces of a container.
pub(crate) fn namespaces(
    sandbox: &Sandbox,
    sc: Option<&LinuxContainerSecurityContext>,
    sandbox_config: &PodSandboxConfig,
    privileged: bool,
    cgroup2: bool,
) -> Result<Vec<LinuxNamespace>, SpecError> {
    check_userns(sc, sandbox_config)?;
    use LinuxNamespaceType as T;
    let mut out = Vec::new();
    match &sandbox.pid {
        PidNs::Container => out.push(ns(T::Pid, None)),
        PidNs::Pod(p) => out.push(ns(T::Pid, Some(p))),
        PidNs::Host => {}
    }
    if let Some(p) = &sandbox.ipc_ns {
        out.push(ns(T::Ipc, Some(p)));
    }
    if let Some(p) = &sandbox.uts_ns {
        out.push(ns(T::Uts, Some(p)));
    }
    out.push(ns(T::Mount, None));
    if let Some(p) = &sandbox.netns {
        out.push(ns(T::Network, Some(p)));
    }
    if cgroup2 && !privileged {
        out.push(ns(T::Cgroup, None));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::{NamespaceOption, UserNamespace};
    use std::path::PathBuf;

    fn sandbox(pid: PidNs, joined: bool) -> Sandbox {
        let p = |s: &str| joined.then(|| PathBuf::from(s));
        Sandbox {
            netns: p("/run/berth/netns/p"),
            ipc_ns: p("/run/berth/ipcns/p"),
            uts_ns: p("/run/berth/utsns/p"),
            pid,
            hostname: "h".into(),
            hostname_file: None,
            hosts_file: None,
            resolv_conf: None,
            shm: None,
        }
    }

    fn kinds(v: &[LinuxNamespace]) -> Vec<(LinuxNamespaceType, Option<String>)> {
        v.iter()
            .map(|n| (n.typ(), n.path().as_ref().map(|p| p.display().to_string())))
            .collect()
    }

    #[test]
    fn pod_namespaces_are_joined() {
        use LinuxNamespaceType as T;
        let got = namespaces(
            &sandbox(PidNs::Container, true),
            None,
            &Default::default(),
            false,
            true,
        )
        .unwrap();
        assert_eq!(
            kinds(&got),
            [
                (T::Pid, None),
                (T::Ipc, Some("/run/berth/ipcns/p".into())),
                (T::Uts, Some("/run/berth/utsns/p".into())),
                (T::Mount, None),
                (T::Network, Some("/run/berth/netns/p".into())),
                (T::Cgroup, None),
            ]
        );
    }

    #[test]
    fn host_namespaces_are_absent() {
        use LinuxNamespaceType as T;
        let got = namespaces(
            &sandbox(PidNs::Host, false),
            None,
            &Default::default(),
            true,
            true,
        )
        .unwrap();
        assert_eq!(kinds(&got), [(T::Mount, None)]);
        let got = namespaces(
            &sandbox(PidNs::Pod("/proc/42/ns/pid".into()), false),
            None,
            &Default::default(),
            false,
            false,
        )
        .unwrap();
        assert_eq!(
            kinds(&got),
            [(T::Pid, Some("/proc/42/ns/pid".into())), (T::Mount, None)]
        );
    }

    #[test]
    fn user_namespaces_are_unsupported() {
        let sc = LinuxContainerSecurityContext {
            namespace_options: Some(NamespaceOption {
                userns_options: Some(UserNamespace {
                    mode: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = namespaces(
            &sandbox(PidNs::Container, true),
            Some(&sc),
            &Default::default(),
            false,
            true,
        )
        .unwrap_err();
        assert!(e.is_invalid_argument());
        let node = LinuxContainerSecurityContext {
            namespace_options: Some(NamespaceOption {
                userns_options: Some(UserNamespace {
                    mode: NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(
            namespaces(
                &sandbox(PidNs::Container, true),
                Some(&node),
                &Default::default(),
                false,
                true
            )
            .is_ok()
        );
    }
}
