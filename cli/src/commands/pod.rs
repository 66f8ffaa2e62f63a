//! runp, stopp, rmp, pods, inspectp: pod sandboxes from crictl-style
//! JSON or YAML configs.

use std::collections::HashMap;
use std::path::Path;

use berth_cli::client::CriClient;
use berth_cli::output::{self, Format};
use k8s_cri::v1 as cri;
use serde::Deserialize;

use super::status_msg;

/// The pod config fields users write (crictl's `pod-config.json` names),
/// every one optional but `metadata`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodConfig {
    pub metadata: Metadata,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub log_directory: String,
    #[serde(default)]
    pub dns_config: Option<DnsConfig>,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default)]
    pub labels: HashMap<String, String>,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    #[serde(default)]
    pub linux: Option<Linux>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub attempt: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    #[serde(default)]
    pub servers: Vec<String>,
    #[serde(default)]
    pub searches: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortMapping {
    #[serde(default)]
    pub protocol: Option<String>,
    pub container_port: i32,
    #[serde(default)]
    pub host_port: i32,
    #[serde(default)]
    pub host_ip: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Linux {
    #[serde(default)]
    pub cgroup_parent: String,
    #[serde(default)]
    pub sysctls: HashMap<String, String>,
    #[serde(default)]
    pub security_context: Option<SecurityContext>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityContext {
    #[serde(default)]
    pub namespace_options: Option<NamespaceOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceOptions {
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub pid: Option<String>,
    #[serde(default)]
    pub ipc: Option<String>,
}

/// POD, CONTAINER or NODE (or their numbers), as crictl accepts them.
fn mode(v: &Option<String>, default: cri::NamespaceMode) -> Result<i32, String> {
    let Some(v) = v else {
        return Ok(default as i32);
    };
    Ok(match v.to_ascii_uppercase().as_str() {
        "POD" | "0" => cri::NamespaceMode::Pod,
        "CONTAINER" | "1" => cri::NamespaceMode::Container,
        "NODE" | "2" => cri::NamespaceMode::Node,
        other => {
            return Err(format!(
                "namespace mode {other:?}: use POD, CONTAINER or NODE"
            ));
        }
    } as i32)
}

/// Reads a pod config (JSON or YAML, by content) into the CRI message.
pub fn load(path: &Path) -> Result<cri::PodSandboxConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let c: PodConfig = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
    };
    to_cri(c)
}

fn to_cri(c: PodConfig) -> Result<cri::PodSandboxConfig, String> {
    let m = c.metadata;
    let uid = if m.uid.is_empty() {
        format!("berth-{}", m.name)
    } else {
        m.uid
    };
    let namespace = if m.namespace.is_empty() {
        "default".into()
    } else {
        m.namespace
    };
    let linux = c.linux.unwrap_or_default();
    let ns = linux
        .security_context
        .and_then(|s| s.namespace_options)
        .unwrap_or_default();
    let mut ports = Vec::new();
    for p in c.port_mappings {
        let protocol = match p
            .protocol
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None | Some("TCP") => cri::Protocol::Tcp,
            Some("UDP") => cri::Protocol::Udp,
            Some("SCTP") => cri::Protocol::Sctp,
            Some(other) => return Err(format!("port protocol {other:?}: use TCP, UDP or SCTP")),
        };
        ports.push(cri::PortMapping {
            protocol: protocol as i32,
            container_port: p.container_port,
            host_port: p.host_port,
            host_ip: p.host_ip,
        });
    }
    Ok(cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: m.name,
            uid,
            namespace,
            attempt: m.attempt,
        }),
        hostname: c.hostname,
        log_directory: c.log_directory,
        dns_config: c.dns_config.map(|d| cri::DnsConfig {
            servers: d.servers,
            searches: d.searches,
            options: d.options,
        }),
        port_mappings: ports,
        labels: c.labels,
        annotations: c.annotations,
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: linux.cgroup_parent,
            sysctls: linux.sysctls,
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: mode(&ns.network, cri::NamespaceMode::Pod)?,
                    // Like kubelet: each container its own PID namespace
                    // unless the config shares one.
                    pid: mode(&ns.pid, cri::NamespaceMode::Container)?,
                    ipc: mode(&ns.ipc, cri::NamespaceMode::Pod)?,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

pub async fn runp(c: &mut CriClient, config: &Path, handler: &str) -> Result<String, String> {
    let config = load(config)?;
    let id = c
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: handler.to_owned(),
        })
        .await
        .map_err(status_msg)?
        .into_inner()
        .pod_sandbox_id;
    Ok(format!("{id}\n"))
}

pub async fn stopp(c: &mut CriClient, ids: &[String]) -> Result<String, String> {
    let mut out = String::new();
    for id in ids {
        c.runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .map_err(status_msg)?;
        out += &format!("Stopped sandbox {id}\n");
    }
    Ok(out)
}

pub async fn rmp(c: &mut CriClient, ids: &[String]) -> Result<String, String> {
    let mut out = String::new();
    for id in ids {
        c.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .map_err(status_msg)?;
        out += &format!("Removed sandbox {id}\n");
    }
    Ok(out)
}

fn age(created_ns: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default();
    let s = ((now - created_ns) / 1_000_000_000).max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

pub async fn pods(c: &mut CriClient, quiet: bool, fmt: Format) -> Result<String, String> {
    let items = c
        .runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .map_err(status_msg)?
        .into_inner()
        .items;
    if quiet {
        return Ok(items.iter().map(|p| format!("{}\n", p.id)).collect());
    }
    if fmt != Format::Table {
        return Ok(output::render(fmt, &items, String::new));
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|p| {
            let m = p.metadata.clone().unwrap_or_default();
            let state = if p.state == cri::PodSandboxState::SandboxReady as i32 {
                "Ready"
            } else {
                "NotReady"
            };
            vec![
                p.id.chars().take(13).collect(),
                age(p.created_at),
                state.into(),
                m.name,
                m.namespace,
                m.attempt.to_string(),
            ]
        })
        .collect();
    Ok(output::table(
        &["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT"],
        &rows,
    ))
}

pub async fn inspectp(c: &mut CriClient, ids: &[String], fmt: Format) -> Result<String, String> {
    let mut out = Vec::new();
    for id in ids {
        let r = c
            .runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: true,
            })
            .await
            .map_err(status_msg)?
            .into_inner();
        let info: serde_json::Value = r
            .info
            .get("info")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        out.push(serde_json::json!({ "status": r.status, "info": info }));
    }
    let fmt = if fmt == Format::Table {
        Format::Json
    } else {
        fmt
    };
    let value = if out.len() == 1 {
        out.remove(0)
    } else {
        serde_json::Value::Array(out)
    };
    Ok(output::render(fmt, &value, String::new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crictl_style_configs_in_json_and_yaml() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("pod.json");
        std::fs::write(
            &json,
            r#"{"metadata":{"name":"web","namespace":"default","uid":"u1","attempt":1},"log_directory":"/tmp","port_mappings":[{"container_port":80,"host_port":8080}],"linux":{}}"#,
        )
        .unwrap();
        let c = load(&json).unwrap();
        assert_eq!(c.metadata.unwrap().attempt, 1);
        assert_eq!(c.port_mappings[0].host_port, 8080);
        let yaml = dir.path().join("pod.yaml");
        std::fs::write(
            &yaml,
            "metadata:\n  name: web\nlinux:\n  security_context:\n    namespace_options:\n      network: NODE\n",
        )
        .unwrap();
        let c = load(&yaml).unwrap();
        let m = c.metadata.unwrap();
        assert_eq!(
            (m.uid.as_str(), m.namespace.as_str()),
            ("berth-web", "default")
        );
        let ns = c
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
        assert_eq!(ns.pid, cri::NamespaceMode::Container as i32);
        std::fs::write(&yaml, "metadata:\n  name: web\nbogus: 1\n").unwrap();
        assert!(load(&yaml).unwrap_err().contains("bogus"));
    }
}
