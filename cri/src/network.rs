//! The pod network, as berth-pod sees it, through the CNI client.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_metrics::health::Health;

use berth_cni::client::{
    Attachment, Bandwidth, ClientConfig, Cni, CniError, Dns, PortMapping, Protocol,
};
use berth_pod::{NetRequest, NetworkError, PodNetwork};

#[derive(Debug)]
pub struct CniNetwork {
    cni: Cni,
    health: Arc<Health>,
    /// How long each pod's ADD took, until RunPodSandbox takes it to
    /// split its time into the sandbox and network phases.
    add_times: Mutex<HashMap<String, Duration>>,
    /// The node's pod CIDRs from kubelet (UpdateRuntimeConfig), offered to
    /// plugins that declare the `ipRanges` capability, so the default
    /// network allocates from this node's range rather than the same
    /// subnet on every node.
    pod_cidrs: std::sync::RwLock<Vec<ipnet::IpNet>>,
}

impl CniNetwork {
    /// `cache_dir` keeps each ADD's result, so DEL works after a restart
    /// or a config change.
    pub fn new(config: berth_cni::Config, cache_dir: PathBuf, health: Arc<Health>) -> CniNetwork {
        CniNetwork {
            cni: Cni::new(ClientConfig::new(&config, cache_dir)),
            health,
            add_times: Mutex::default(),
            pod_cidrs: Default::default(),
        }
    }

    /// The node's pod CIDRs, for pods attached from now on.
    pub fn set_pod_cidrs(&self, cidrs: Vec<ipnet::IpNet>) {
        *self.pod_cidrs.write().unwrap_or_else(|p| p.into_inner()) = cidrs;
    }

    /// Whether kubelet has sent the node's pod CIDRs.
    pub fn has_pod_cidrs(&self) -> bool {
        !self
            .pod_cidrs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    fn attachment(&self, req: &NetRequest<'_>) -> Attachment {
        let mut a = attachment(req);
        let cidrs = self.pod_cidrs.read().unwrap_or_else(|p| p.into_inner());
        if !cidrs.is_empty() {
            // CNI's ipRanges: one range set per address family.
            let sets: Vec<serde_json::Value> = cidrs
                .iter()
                .map(|c| serde_json::json!([{ "subnet": c.trunc().to_string() }]))
                .collect();
            a.extra_capabilities
                .insert("ipRanges".into(), serde_json::Value::Array(sets));
        }
        a
    }

    /// How long pod `id`'s CNI ADD took (once; None if it had none).
    pub fn take_add_time(&self, id: &str) -> Option<Duration> {
        self.add_times
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
    }

    /// NetworkReady, for `Status`.
    pub fn status(&self) -> berth_cni::NetworkStatus {
        self.cni.network_status()
    }
}

/// Pod annotations limiting the pod's bandwidth, in bits per second
/// (checked at the API edge: `validate::bandwidth`).
pub const INGRESS_BANDWIDTH: &str = "kubernetes.io/ingress-bandwidth";
pub const EGRESS_BANDWIDTH: &str = "kubernetes.io/egress-bandwidth";

fn bandwidth(req: &NetRequest<'_>) -> Option<Bandwidth> {
    let a = &req.spec.annotations;
    let ingress = a
        .get(INGRESS_BANDWIDTH)
        .and_then(|v| crate::quantity::parse(v).ok());
    let egress = a
        .get(EGRESS_BANDWIDTH)
        .and_then(|v| crate::quantity::parse(v).ok());
    if ingress.is_none() && egress.is_none() {
        return None;
    }
    // As containerd does: the rate limits, the burst does not.
    Some(Bandwidth {
        ingress_rate: ingress.unwrap_or(0),
        ingress_burst: ingress.map_or(0, |_| u64::from(u32::MAX)),
        egress_rate: egress.unwrap_or(0),
        egress_burst: egress.map_or(0, |_| u64::from(u32::MAX)),
    })
}

fn attachment(req: &NetRequest<'_>) -> Attachment {
    let spec = req.spec;
    let mut a = Attachment::new(req.id.to_owned(), req.netns.to_owned());
    a.pod_namespace = spec.metadata.namespace.clone();
    a.pod_name = spec.metadata.name.clone();
    a.pod_uid = spec.metadata.uid.clone();
    a.port_mappings = spec
        .port_mappings
        .iter()
        .filter(|p| p.host_port != 0)
        .map(|p| PortMapping {
            host_port: p.host_port,
            container_port: p.container_port,
            protocol: match p.protocol {
                berth_pod::Protocol::Tcp => Protocol::Tcp,
                berth_pod::Protocol::Udp => Protocol::Udp,
                berth_pod::Protocol::Sctp => Protocol::Sctp,
            },
            host_ip: p.host_ip.parse().ok(),
        })
        .collect();
    a.dns = spec.dns.as_ref().map(|d| Dns {
        servers: d.servers.clone(),
        searches: d.searches.clone(),
        options: d.options.clone(),
    });
    a.bandwidth = bandwidth(req);
    a.annotations = spec.annotations.clone();
    a
}

/// A CNI failure in the pod network's terms: no network (yet) is not
/// ready, an unusable attachment invalid, anything else a failure.
fn network_error(e: CniError) -> NetworkError {
    match e {
        CniError::NoNetwork(_) | CniError::PluginNotFound { .. } => {
            NetworkError::NotReady(Box::new(e))
        }
        CniError::InvalidAttachment { .. } => NetworkError::Invalid(Box::new(e)),
        e => NetworkError::Failed(Box::new(e)),
    }
}

impl PodNetwork for CniNetwork {
    async fn setup(&self, req: NetRequest<'_>) -> Result<Vec<IpAddr>, NetworkError> {
        let started = Instant::now();
        berth_cni::client::set_loopback_up(req.netns)
            .await
            .map_err(network_error)?;
        let result = self.cni.add(&self.attachment(&req)).await;
        let took = started.elapsed();
        self.health.cni("add", result.is_ok(), took.as_secs_f64());
        let result = result.map_err(network_error)?;
        self.add_times
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(req.id.to_owned(), took);
        Ok(result.pod_ips())
    }

    async fn teardown(&self, req: NetRequest<'_>) -> Result<(), NetworkError> {
        let started = Instant::now();
        let result = self.cni.del(&self.attachment(&req)).await;
        self.health
            .cni("del", result.is_ok(), started.elapsed().as_secs_f64());
        // An ADD whose pod failed to start is not waited for.
        self.take_add_time(req.id);
        result.map_err(network_error)
    }
}
