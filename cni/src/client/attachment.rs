//! What the CNI client is told and what it answers: its configuration
//! (`ClientConfig`), one pod's attachment to the network (`Attachment`:
//! ids, netns, CNI_ARGS and capability arguments, checked before any
//! plugin runs), and ADD's result (`AddResult`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use rscni_types::types::CNIResult;
use serde::Serialize;
use serde_json::{Map, Value};

use super::*;

/// Where the client finds networks and plugins, where it caches results,
/// and how long a plugin may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The CNI conf dir (the first valid list in lexical order is used).
    pub conf_dir: PathBuf,
    /// Directories searched, in order, for plugin binaries (`CNI_PATH`).
    pub bin_dirs: Vec<PathBuf>,
    /// The result cache directory (created on first ADD).
    pub cache_dir: PathBuf,
    /// Per-plugin limit for ADD.
    pub add_timeout: Duration,
    /// Per-plugin limit for DEL (also the rollback of a failed ADD) and GC.
    pub del_timeout: Duration,
    /// Per-plugin limit for CHECK.
    pub check_timeout: Duration,
    /// Per-plugin limit for STATUS and VERSION (kubelet's Status is polled).
    pub status_timeout: Duration,
}

/// The default cache dir.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/berth/cni/results";

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig::new(&crate::Config::default(), DEFAULT_CACHE_DIR)
    }
}

impl ClientConfig {
    /// The `[cni]` section's dirs, a cache dir, and default timeouts
    /// (ADD/DEL/CHECK 60 s, STATUS/VERSION 10 s).
    pub fn new(cni: &crate::Config, cache_dir: impl Into<PathBuf>) -> Self {
        ClientConfig {
            conf_dir: cni.conf_dir.clone(),
            bin_dirs: cni.bin_dirs.clone(),
            cache_dir: cache_dir.into(),
            add_timeout: Duration::from_secs(60),
            del_timeout: Duration::from_secs(60),
            check_timeout: Duration::from_secs(60),
            status_timeout: Duration::from_secs(10),
        }
    }
}

/// A port mapping, passed as the `portMappings` capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    /// The host address to bind; None for all.
    #[serde(rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
}

/// A port mapping's transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

/// DNS settings, passed as the `dns` capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Dns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// Traffic shaping, passed as the `bandwidth` capability (rates in bits/s,
/// bursts in bits, as the bandwidth plugin reads them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    pub ingress_rate: u64,
    pub ingress_burst: u64,
    pub egress_rate: u64,
    pub egress_burst: u64,
}

/// One pod's attachment to the network: what ADD, DEL and CHECK are about.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// `CNI_CONTAINERID`: the sandbox id (letters, digits, `_`, `.`, `-`).
    pub container_id: String,
    /// `CNI_NETNS`: the pinned network namespace. Required for ADD; on DEL
    /// an empty path means "the one cached at ADD".
    pub netns: PathBuf,
    /// `CNI_IFNAME`, `eth0` by default.
    pub ifname: String,
    /// `K8S_POD_NAMESPACE` in `CNI_ARGS`.
    pub pod_namespace: String,
    /// `K8S_POD_NAME` in `CNI_ARGS`.
    pub pod_name: String,
    /// `K8S_POD_UID` in `CNI_ARGS`.
    pub pod_uid: String,
    /// The `portMappings` capability (omitted when empty).
    pub port_mappings: Vec<PortMapping>,
    /// The `dns` capability.
    pub dns: Option<Dns>,
    /// The `bandwidth` capability.
    pub bandwidth: Option<Bandwidth>,
    /// The `io.kubernetes.cri.pod-annotations` capability (omitted when empty).
    pub annotations: BTreeMap<String, String>,
    /// Any other capability arguments by name (e.g. `cgroupPath`, `ips`,
    /// `mac`); the named fields above take precedence.
    pub extra_capabilities: BTreeMap<String, Value>,
}

impl Default for Attachment {
    fn default() -> Self {
        Attachment {
            container_id: String::new(),
            netns: PathBuf::new(),
            ifname: "eth0".into(),
            pod_namespace: String::new(),
            pod_name: String::new(),
            pod_uid: String::new(),
            port_mappings: Vec::new(),
            dns: None,
            bandwidth: None,
            annotations: BTreeMap::new(),
            extra_capabilities: BTreeMap::new(),
        }
    }
}

impl Attachment {
    /// An attachment of `container_id` on `eth0` in `netns`.
    pub fn new(container_id: impl Into<String>, netns: impl Into<PathBuf>) -> Self {
        Attachment {
            container_id: container_id.into(),
            netns: netns.into(),
            ..Attachment::default()
        }
    }

    /// `CNI_ARGS` as key/value pairs, the way kubelet's dockershim and
    /// containerd pass them.
    pub fn cni_args(&self) -> Vec<(String, String)> {
        [
            ("IgnoreUnknown", "1"),
            ("K8S_POD_NAMESPACE", self.pod_namespace.as_str()),
            ("K8S_POD_NAME", self.pod_name.as_str()),
            ("K8S_POD_INFRA_CONTAINER_ID", self.container_id.as_str()),
            ("K8S_POD_UID", self.pod_uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// The capability arguments the runtime supplies; each plugin gets those
    /// it declares in `capabilities`, as `runtimeConfig`.
    pub fn capability_args(&self) -> Map<String, Value> {
        let mut caps: Map<String, Value> = self
            .extra_capabilities
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut put = |key: &str, value: Result<Value, serde_json::Error>| {
            if let Ok(v) = value {
                caps.insert(key.to_owned(), v);
            }
        };
        if !self.port_mappings.is_empty() {
            put("portMappings", serde_json::to_value(&self.port_mappings));
        }
        if let Some(dns) = &self.dns {
            put("dns", serde_json::to_value(dns));
        }
        if let Some(bw) = &self.bandwidth {
            put("bandwidth", serde_json::to_value(bw));
        }
        if !self.annotations.is_empty() {
            put(
                POD_ANNOTATIONS_CAPABILITY,
                serde_json::to_value(&self.annotations),
            );
        }
        caps
    }

    /// Checks what ends up in file names and the plugin environment.
    pub(super) fn validate(&self, need_netns: bool) -> Result<(), CniError> {
        let bad = |field, reason: &str| {
            Err(CniError::InvalidAttachment {
                field,
                reason: reason.to_owned(),
            })
        };
        let id = &self.container_id;
        if id.is_empty() {
            return bad("container_id", "empty");
        }
        if id.len() > 128 {
            return bad("container_id", "longer than 128 characters");
        }
        if !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            || id.starts_with('.')
        {
            return bad(
                "container_id",
                "only letters, digits, '_', '.' and '-' are allowed (not first '.')",
            );
        }
        let ifname = &self.ifname;
        if ifname.is_empty() || ifname.len() > 15 || ifname == "." || ifname == ".." {
            return bad("ifname", "must be 1 to 15 bytes and not '.' or '..'");
        }
        if ifname
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        {
            return bad("ifname", "must not contain '/', ':' or whitespace");
        }
        for (field, v) in [
            ("pod_namespace", &self.pod_namespace),
            ("pod_name", &self.pod_name),
            ("pod_uid", &self.pod_uid),
        ] {
            if v.contains([';', '=']) || v.chars().any(char::is_control) {
                return bad(field, "must not contain ';', '=' or control characters");
            }
        }
        if self.netns.to_str().is_none() {
            return bad("netns", "not UTF-8");
        }
        if need_netns && !self.netns.is_absolute() {
            return bad("netns", "must be an absolute path");
        }
        Ok(())
    }
}

/// What ADD returns.
#[derive(Debug, Clone, PartialEq)]
pub struct AddResult {
    /// The network the pod was attached to.
    pub network: String,
    /// The pod's addresses on its interface, in result order.
    pub ips: Vec<IpAddr>,
    /// The first IPv4 of `ips` (PodSandboxStatus's primary IP when present).
    pub ipv4: Option<Ipv4Addr>,
    /// The first IPv6 of `ips`.
    pub ipv6: Option<Ipv6Addr>,
    /// The final result, parsed.
    pub result: CNIResult,
    /// The final result as JSON, in the list's cniVersion.
    pub raw: Value,
}

impl AddResult {
    pub(super) fn new(network: String, raw: Value, result: CNIResult, ifname: &str) -> Self {
        let ips = conf::pod_ips(&result, ifname);
        let (ipv4, ipv6) = conf::first_of_each(&ips);
        AddResult {
            network,
            ips,
            ipv4,
            ipv6,
            result,
            raw,
        }
    }

    /// The IPs for PodSandboxStatus: the first IPv4 then the first IPv6
    /// (what kubelet expects for dual-stack), or whatever one exists.
    pub fn pod_ips(&self) -> Vec<IpAddr> {
        self.ipv4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.ipv6.map(IpAddr::V6))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_args_and_capabilities() {
        let mut a = Attachment::new("abc", "/run/netns/x");
        a.pod_namespace = "ns".into();
        a.pod_name = "p".into();
        a.pod_uid = "u-1".into();
        assert_eq!(
            conf::cni_args_string(&a.cni_args()),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1"
        );
        assert!(a.capability_args().is_empty());
        a.port_mappings.push(PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Udp,
            host_ip: Some("127.0.0.1".parse().unwrap()),
        });
        a.dns = Some(Dns {
            servers: vec!["10.0.0.10".into()],
            searches: vec!["svc".into()],
            options: vec!["ndots:5".into()],
        });
        a.bandwidth = Some(Bandwidth {
            ingress_rate: 1000,
            ..Bandwidth::default()
        });
        a.annotations.insert("k".into(), "v".into());
        a.extra_capabilities
            .insert("cgroupPath".into(), json!("/kubepods/x"));
        let caps = a.capability_args();
        assert_eq!(
            caps["portMappings"],
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "udp", "hostIP": "127.0.0.1"}])
        );
        assert_eq!(
            caps["dns"],
            json!({"servers": ["10.0.0.10"], "searches": ["svc"], "options": ["ndots:5"]})
        );
        assert_eq!(
            caps["bandwidth"],
            json!({"ingressRate": 1000, "ingressBurst": 0, "egressRate": 0, "egressBurst": 0})
        );
        assert_eq!(caps[POD_ANNOTATIONS_CAPABILITY], json!({"k": "v"}));
        assert_eq!(caps["cgroupPath"], "/kubepods/x");
    }

    #[test]
    fn attachments_are_validated() {
        let ok = Attachment::new("abc-1_2.3", "/run/netns/x");
        assert!(ok.validate(true).is_ok());
        let cases: Vec<(Attachment, &str)> = vec![
            (Attachment::new("", "/n"), "container_id"),
            (Attachment::new("../x", "/n"), "container_id"),
            (Attachment::new("a/b", "/n"), "container_id"),
            (Attachment::new(".a", "/n"), "container_id"),
            (Attachment::new("a".repeat(129), "/n"), "container_id"),
            (
                Attachment {
                    ifname: "../../x".into(),
                    ..Attachment::new("a", "/n")
                },
                "ifname",
            ),
            (
                Attachment {
                    ifname: "a-very-long-ifname".into(),
                    ..Attachment::new("a", "/n")
                },
                "ifname",
            ),
            (
                Attachment {
                    pod_name: "x;K8S_POD_UID=y".into(),
                    ..Attachment::new("a", "/n")
                },
                "pod_name",
            ),
            (Attachment::new("a", "relative"), "netns"),
        ];
        for (a, field) in cases {
            match a.validate(true) {
                Err(CniError::InvalidAttachment { field: f, .. }) => assert_eq!(f, field, "{a:?}"),
                other => panic!("{a:?}: {other:?}"),
            }
        }
        // DEL may leave the netns empty.
        assert!(Attachment::new("a", "").validate(false).is_ok());
    }
}
