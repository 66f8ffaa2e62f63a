//! Namespaces: a new mount namespace; pid per the sandbox (new, join, host);
//! network/ipc/uts joined from the pod's pinned namespaces, or absent (the
//! host's); the pod's user namespace joined when it has one (userns.rs);
//! a new cgroup namespace on cgroup v2 unless privileged (containerd).

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use crate::userns::UserNs;
use crate::{PidNs, Sandbox};

fn ns(typ: LinuxNamespaceType, path: Option<&std::path::Path>) -> LinuxNamespace {
    let mut n = LinuxNamespace::default();
    n.set_typ(typ);
    n.set_path(path.map(|p| p.to_path_buf()));
    n
}

/// The namespaces of a container. The user namespace comes first: every
/// other one the container makes is then owned by it.
pub(crate) fn namespaces(
    sandbox: &Sandbox,
    userns: Option<&UserNs>,
    privileged: bool,
    cgroup2: bool,
) -> Vec<LinuxNamespace> {
    use LinuxNamespaceType as T;
    let mut out = Vec::new();
    if let Some(u) = userns {
        out.push(ns(T::User, Some(&u.path)));
    }
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn sandbox(pid: PidNs, joined: bool) -> Sandbox {
        let p = |s: &str| joined.then(|| PathBuf::from(s));
        Sandbox {
            netns: p("/run/berth/netns/p"),
            ipc_ns: p("/run/berth/ipcns/p"),
            uts_ns: p("/run/berth/utsns/p"),
            user_ns: None,
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
        let got = namespaces(&sandbox(PidNs::Container, true), None, false, true);
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
        let got = namespaces(&sandbox(PidNs::Host, false), None, true, true);
        assert_eq!(kinds(&got), [(T::Mount, None)]);
        let got = namespaces(
            &sandbox(PidNs::Pod("/proc/42/ns/pid".into()), false),
            None,
            false,
            false,
        );
        assert_eq!(
            kinds(&got),
            [(T::Pid, Some("/proc/42/ns/pid".into())), (T::Mount, None)]
        );
    }

    #[test]
    fn the_user_namespace_comes_first() {
        use LinuxNamespaceType as T;
        let u = UserNs {
            path: PathBuf::from("/run/berth/pods/p/user"),
            uids: Vec::new(),
            gids: Vec::new(),
        };
        let got = namespaces(&sandbox(PidNs::Container, true), Some(&u), false, false);
        assert_eq!(
            kinds(&got),
            [
                (T::User, Some("/run/berth/pods/p/user".into())),
                (T::Pid, None),
                (T::Ipc, Some("/run/berth/ipcns/p".into())),
                (T::Uts, Some("/run/berth/utsns/p".into())),
                (T::Mount, None),
                (T::Network, Some("/run/berth/netns/p".into())),
            ]
        );
    }
}
