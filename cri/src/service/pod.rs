//! PodSandbox RPCs: CRI messages to and from berth-pod's types.

use std::collections::{BTreeMap, HashMap};

use berth_pod::{
    Dns, IdMap, Metadata, NsMode, NsOptions, PodFilter, PortMapping, Protocol, SandboxRecord,
    SandboxSpec, SandboxState, UserNs,
};
use k8s_cri::v1 as cri;
use tonic::Status;

fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg.into())
}

fn ns_mode(v: i32, what: &str) -> Result<NsMode, Status> {
    match cri::NamespaceMode::try_from(v) {
        Ok(cri::NamespaceMode::Pod) => Ok(NsMode::Pod),
        Ok(cri::NamespaceMode::Container) => Ok(NsMode::Container),
        Ok(cri::NamespaceMode::Node) => Ok(NsMode::Node),
        Ok(cri::NamespaceMode::Target) => Err(invalid(format!(
            "namespace_options.{what} = TARGET is not supported"
        ))),
        Err(_) => Err(invalid(format!(
            "namespace_options.{what}: unknown mode {v}"
        ))),
    }
}

/// The pod's user namespace from `userns_options`: none for mode NODE
/// (or no options: the node's, as before user namespaces), the checked
/// mappings for POD; CONTAINER and TARGET are not user namespace modes.
fn userns_from(u: Option<&cri::UserNamespace>) -> Result<Option<UserNs>, Status> {
    let Some(u) = u else {
        return Ok(None);
    };
    match cri::NamespaceMode::try_from(u.mode) {
        Ok(cri::NamespaceMode::Node) => {
            if !u.uids.is_empty() || !u.gids.is_empty() {
                return Err(invalid(
                    "userns_options: mappings given with mode NODE (the node's user namespace)",
                ));
            }
            Ok(None)
        }
        Ok(cri::NamespaceMode::Pod) => {
            let maps = |v: &[cri::IdMapping]| -> Vec<IdMap> {
                v.iter()
                    .map(|m| IdMap {
                        container_id: m.container_id,
                        host_id: m.host_id,
                        length: m.length,
                    })
                    .collect()
            };
            let uids = berth_pod::userns::mapping("uids", &maps(&u.uids)).map_err(invalid)?;
            let gids = berth_pod::userns::mapping("gids", &maps(&u.gids)).map_err(invalid)?;
            Ok(Some(UserNs { uids, gids }))
        }
        Ok(m @ (cri::NamespaceMode::Container | cri::NamespaceMode::Target)) => {
            Err(invalid(format!(
                "userns_options.mode = {}: a user namespace is the pod's (POD) or the node's (NODE)",
                m.as_str_name()
            )))
        }
        Err(_) => Err(invalid(format!("userns_options: unknown mode {}", u.mode))),
    }
}

/// The CRI's view of a pod's user namespace, for its status.
fn userns_options(u: Option<&UserNs>) -> cri::UserNamespace {
    let map = |m: &IdMap| {
        vec![cri::IdMapping {
            host_id: m.host_id,
            container_id: m.container_id,
            length: m.length,
        }]
    };
    match u {
        None => cri::UserNamespace {
            mode: cri::NamespaceMode::Node as i32,
            ..Default::default()
        },
        Some(u) => cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: map(&u.uids),
            gids: map(&u.gids),
        },
    }
}

fn to_mode(m: NsMode) -> i32 {
    match m {
        NsMode::Pod => cri::NamespaceMode::Pod as i32,
        NsMode::Container => cri::NamespaceMode::Container as i32,
        NsMode::Node => cri::NamespaceMode::Node as i32,
    }
}

fn port(v: i32, what: &str) -> Result<u16, Status> {
    u16::try_from(v).map_err(|_| invalid(format!("port_mappings: {what} {v} is not a port")))
}

/// Validates and converts a RunPodSandbox request.
pub fn spec_from(
    config: Option<cri::PodSandboxConfig>,
    handler: String,
) -> Result<SandboxSpec, Status> {
    let c = config.ok_or_else(|| invalid("config is required"))?;
    crate::validate::pod(&c, &handler)?;
    let cri_config = {
        use base64::Engine;
        use prost::Message;
        base64::engine::general_purpose::STANDARD.encode(c.encode_to_vec())
    };
    let m = c
        .metadata
        .ok_or_else(|| invalid("config.metadata is required"))?;
    let linux = c.linux.unwrap_or_default();
    let sc = linux.security_context.unwrap_or_default();
    let nso = sc.namespace_options.unwrap_or_default();
    let namespaces = NsOptions {
        network: ns_mode(nso.network, "network")?,
        pid: ns_mode(nso.pid, "pid")?,
        ipc: ns_mode(nso.ipc, "ipc")?,
    };
    if namespaces.network == NsMode::Container || namespaces.ipc == NsMode::Container {
        return Err(invalid(
            "network and ipc namespaces are per pod (POD) or the node's (NODE)",
        ));
    }
    let userns = userns_from(nso.userns_options.as_ref())?;
    if userns.is_some() {
        berth_pod::userns::check_namespaces(&namespaces).map_err(invalid)?;
    }
    let mut port_mappings = Vec::new();
    for p in c.port_mappings {
        let protocol = match cri::Protocol::try_from(p.protocol) {
            Ok(cri::Protocol::Tcp) => Protocol::Tcp,
            Ok(cri::Protocol::Udp) => Protocol::Udp,
            Ok(cri::Protocol::Sctp) => Protocol::Sctp,
            Err(_) => {
                return Err(invalid(format!(
                    "port_mappings: unknown protocol {}",
                    p.protocol
                )));
            }
        };
        port_mappings.push(PortMapping {
            protocol,
            container_port: port(p.container_port, "container_port")?,
            host_port: port(p.host_port, "host_port")?,
            host_ip: p.host_ip,
        });
    }
    Ok(SandboxSpec {
        metadata: Metadata {
            name: m.name,
            uid: m.uid,
            namespace: m.namespace,
            attempt: m.attempt,
        },
        hostname: c.hostname,
        log_directory: c.log_directory,
        dns: c.dns_config.map(|d| Dns {
            servers: d.servers,
            searches: d.searches,
            options: d.options,
        }),
        port_mappings,
        labels: c.labels.into_iter().collect(),
        annotations: c.annotations.into_iter().collect(),
        cgroup_parent: linux.cgroup_parent,
        sysctls: linux.sysctls.into_iter().collect(),
        namespaces,
        userns,
        runtime_handler: handler,
        cri_config,
    })
}

pub(super) fn metadata(m: &Metadata) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: m.name.clone(),
        uid: m.uid.clone(),
        namespace: m.namespace.clone(),
        attempt: m.attempt,
    }
}

fn state(s: SandboxState) -> i32 {
    match s {
        SandboxState::Ready => cri::PodSandboxState::SandboxReady as i32,
        SandboxState::Creating | SandboxState::NotReady => {
            cri::PodSandboxState::SandboxNotready as i32
        }
    }
}

pub(super) fn map(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub fn status(rec: &SandboxRecord, verbose: bool) -> cri::PodSandboxStatusResponse {
    let mut ips = rec.ips.iter().map(|ip| ip.to_string());
    let ns = rec.spec.namespaces;
    let status = cri::PodSandboxStatus {
        id: rec.id.clone(),
        metadata: Some(metadata(&rec.spec.metadata)),
        state: state(rec.state),
        created_at: rec.created_at,
        network: Some(cri::PodSandboxNetworkStatus {
            ip: ips.next().unwrap_or_default(),
            additional_ips: ips.map(|ip| cri::PodIp { ip }).collect(),
        }),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(cri::NamespaceOption {
                    network: to_mode(ns.network),
                    pid: to_mode(ns.pid),
                    ipc: to_mode(ns.ipc),
                    userns_options: Some(userns_options(rec.spec.userns.as_ref())),
                    ..Default::default()
                }),
            }),
        }),
        labels: map(&rec.spec.labels),
        annotations: map(&rec.spec.annotations),
        runtime_handler: rec.spec.runtime_handler.clone(),
    };
    let mut info = HashMap::new();
    if verbose {
        let detail = serde_json::json!({
            "netns": rec.netns,
            "ipcns": rec.ipcns,
            "utsns": rec.utsns,
            "userns": rec.userns,
            "cgroup": rec.cgroup,
            "filesDir": rec.files_dir,
            "shm": rec.shm,
            "ips": rec.ips,
            "state": format!("{:?}", rec.state),
            "spec": rec.spec,
        });
        info.insert("info".to_owned(), detail.to_string());
    }
    cri::PodSandboxStatusResponse {
        status: Some(status),
        info,
        containers_statuses: Vec::new(),
        timestamp: 0,
    }
}

pub fn list_item(rec: &SandboxRecord) -> cri::PodSandbox {
    cri::PodSandbox {
        id: rec.id.clone(),
        metadata: Some(metadata(&rec.spec.metadata)),
        state: state(rec.state),
        created_at: rec.created_at,
        labels: map(&rec.spec.labels),
        annotations: map(&rec.spec.annotations),
        runtime_handler: rec.spec.runtime_handler.clone(),
    }
}

pub fn filter_from(f: Option<cri::PodSandboxFilter>) -> PodFilter {
    let Some(f) = f else {
        return PodFilter::default();
    };
    PodFilter {
        id: Some(f.id).filter(|s| !s.is_empty()),
        state: f.state.map(|s| {
            if s.state == cri::PodSandboxState::SandboxReady as i32 {
                SandboxState::Ready
            } else {
                SandboxState::NotReady
            }
        }),
        labels: f.label_selector,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "web".into(),
                uid: "u1".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            port_mappings: vec![cri::PortMapping {
                protocol: cri::Protocol::Udp as i32,
                container_port: 53,
                host_port: 5353,
                host_ip: String::new(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn maps_a_config() {
        let s = spec_from(Some(config()), String::new()).unwrap();
        assert_eq!(s.metadata.name, "web");
        assert_eq!(s.port_mappings[0].protocol, Protocol::Udp);
        assert_eq!(s.namespaces.network, NsMode::Pod);
    }

    fn with_userns(u: cri::UserNamespace) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        userns_options: Some(u),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..config()
        }
    }

    fn ids(host_id: u32) -> Vec<cri::IdMapping> {
        vec![cri::IdMapping {
            host_id,
            container_id: 0,
            length: 65536,
        }]
    }

    #[test]
    fn user_namespaces_of_the_pod_or_the_node() {
        let pod = |uids, gids| cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids,
            gids,
        };
        let s = spec_from(
            Some(with_userns(pod(ids(65536), ids(131072)))),
            String::new(),
        )
        .unwrap();
        let u = s.userns.unwrap();
        assert_eq!(u.root(), (65536, 131072));
        assert_eq!(u.uids.length, 65536);
        let node = cri::UserNamespace {
            mode: cri::NamespaceMode::Node as i32,
            ..Default::default()
        };
        assert!(
            spec_from(Some(with_userns(node)), String::new())
                .unwrap()
                .userns
                .is_none()
        );
        assert!(
            spec_from(Some(config()), String::new())
                .unwrap()
                .userns
                .is_none()
        );
        // What the status reports back.
        let back = userns_options(Some(&u));
        assert_eq!(back.mode, cri::NamespaceMode::Pod as i32);
        assert_eq!(back.uids, ids(65536));
        assert_eq!(userns_options(None).mode, cri::NamespaceMode::Node as i32);
    }

    #[test]
    fn forbidden_user_namespaces_are_invalid_arguments_naming_the_problem() {
        let pod = |uids, gids| cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids,
            gids,
        };
        let mut two = ids(65536);
        two.push(cri::IdMapping {
            host_id: 200_000,
            container_id: 65536,
            length: 10,
        });
        let not_zero = vec![cri::IdMapping {
            host_id: 65536,
            container_id: 1,
            length: 65536,
        }];
        let empty = vec![cri::IdMapping {
            host_id: 65536,
            container_id: 0,
            length: 0,
        }];
        let overflow = vec![cri::IdMapping {
            host_id: u32::MAX - 10,
            container_id: 0,
            length: 65536,
        }];
        let cases: Vec<(cri::UserNamespace, &str)> = vec![
            (pod(two, ids(65536)), "only one is supported"),
            (pod(ids(65536), not_zero), "container id 0 is not mapped"),
            (pod(Vec::new(), ids(65536)), "uids: no mapping"),
            (pod(ids(65536), Vec::new()), "gids: no mapping"),
            (pod(empty, ids(65536)), "length 0"),
            (pod(overflow, ids(65536)), "overflow"),
            (
                cri::UserNamespace {
                    mode: cri::NamespaceMode::Container as i32,
                    ..pod(ids(65536), ids(65536))
                },
                "CONTAINER",
            ),
            (
                cri::UserNamespace {
                    mode: cri::NamespaceMode::Target as i32,
                    ..pod(ids(65536), ids(65536))
                },
                "TARGET",
            ),
            (
                cri::UserNamespace {
                    mode: cri::NamespaceMode::Node as i32,
                    ..pod(ids(65536), ids(65536))
                },
                "mode NODE",
            ),
        ];
        for (u, want) in cases {
            let e = spec_from(Some(with_userns(u.clone())), String::new()).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{u:?}");
            assert!(e.message().contains(want), "{want}: {}", e.message());
        }
        // With the node's network namespace.
        let mut c = with_userns(pod(ids(65536), ids(65536)));
        c.linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .namespace_options
            .as_mut()
            .unwrap()
            .network = cri::NamespaceMode::Node as i32;
        let e = spec_from(Some(c), String::new()).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("network"), "{}", e.message());
    }

    #[test]
    fn refuses_bad_configs() {
        assert!(spec_from(None, String::new()).is_err());
        let mut c = config();
        c.metadata = None;
        assert!(
            spec_from(Some(c), String::new())
                .unwrap_err()
                .message()
                .contains("metadata")
        );
        let mut c = config();
        c.port_mappings[0].host_port = 70000;
        assert!(spec_from(Some(c), String::new()).is_err());
        let mut c = config();
        c.linux = Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(spec_from(Some(c), String::new()).is_err());
    }
}
