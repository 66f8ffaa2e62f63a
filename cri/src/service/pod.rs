//! PodSandbox RPCs: CRI messages to and from berth-pod's types.

use std::collections::{BTreeMap, HashMap};

use berth_pod::{
    Dns, Metadata, NsMode, NsOptions, PodFilter, PortMapping, Protocol, SandboxRecord, SandboxSpec,
    SandboxState,
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
    if let Some(u) = &nso.userns_options
        && cri::NamespaceMode::try_from(u.mode) != Ok(cri::NamespaceMode::Node)
    {
        return Err(invalid(
            "user namespaces (userns_options.mode = POD) are not supported yet",
        ));
    }
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
