//! ListMetricDescriptors and ListPodSandboxMetrics: the collector's latest
//! samples as the cAdvisor-named metrics kubelet serves on
//! `/metrics/cadvisor` with `PodAndContainerStatsFromCRI` (see
//! `berth_metrics::cadvisor` for the names and labels). Like cAdvisor, a
//! pod's own cgroup is reported with `container=""` and its network
//! interfaces with `container="POD"`; `id` is the cgroup's path and
//! `name` the object's id.

use k8s_cri::v1 as cri;
use tonic::Status;

use berth_containers::ContainerRecord;
use berth_metrics::cadvisor::{self, Kind};
use berth_pod::{PodFilter, SandboxRecord, SandboxState};

use super::Shared;
use crate::error;
use crate::stats::is_live;

/// ListMetricDescriptors.
pub fn descriptors() -> Vec<cri::MetricDescriptor> {
    cadvisor::DESCRIPTORS
        .iter()
        .map(|d| cri::MetricDescriptor {
            name: d.name.to_owned(),
            help: d.help.to_owned(),
            label_keys: cadvisor::BASE_LABELS
                .iter()
                .chain(d.extra)
                .map(|k| (*k).to_owned())
                .collect(),
        })
        .collect()
}

fn to_cri(ms: Vec<cadvisor::Metric>) -> Vec<cri::Metric> {
    ms.into_iter()
        .map(|m| cri::Metric {
            name: m.name.to_owned(),
            timestamp: m.at,
            metric_type: match m.kind {
                Kind::Counter => cri::MetricType::Counter,
                Kind::Gauge => cri::MetricType::Gauge,
            } as i32,
            label_values: m.labels,
            value: Some(cri::UInt64Value { value: m.value }),
        })
        .collect()
}

fn cgroup_id(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

fn container(shared: &Shared, pod: &SandboxRecord, rec: &ContainerRecord) -> cri::ContainerMetrics {
    let sample = shared.stats.container(&shared.containers, rec);
    let m = &pod.spec.metadata;
    let name = rec
        .config()
        .metadata
        .as_ref()
        .map(|md| md.name.clone())
        .unwrap_or_default();
    let cgroup = berth_cgroups::cgroup_dir(&rec.cgroups_path).unwrap_or_default();
    let base = [
        name,
        cgroup_id(&cgroup),
        rec.image.requested.clone(),
        rec.id.clone(),
        m.namespace.clone(),
        m.name.clone(),
    ];
    cri::ContainerMetrics {
        container_id: rec.id.clone(),
        metrics: to_cri(cadvisor::metrics(&base, &sample)),
    }
}

fn pod(shared: &Shared, rec: &SandboxRecord) -> Result<cri::PodSandboxMetrics, Status> {
    let s = shared.stats.pod(rec);
    let m = &rec.spec.metadata;
    let base = |container: &str| {
        [
            container.to_owned(),
            cgroup_id(&rec.cgroup),
            String::new(),
            rec.id.clone(),
            m.namespace.clone(),
            m.name.clone(),
        ]
    };
    // The pod's cgroup as cAdvisor's container="" series; its network,
    // which cAdvisor reads from the pause container, as container="POD".
    let cgroup_only = berth_metrics::collector::Sample {
        net: None,
        ..s.clone()
    };
    let net_only = berth_metrics::collector::Sample {
        net: s.net.clone(),
        ..Default::default()
    };
    let mut metrics = cadvisor::metrics(&base(""), &cgroup_only);
    metrics.extend(cadvisor::metrics(&base("POD"), &net_only));
    let container_metrics = shared
        .containers
        .of_pod(&rec.id)
        .map_err(error::container)?
        .iter()
        .filter(|c| is_live(c))
        .map(|c| container(shared, rec, c))
        .collect();
    Ok(cri::PodSandboxMetrics {
        pod_sandbox_id: rec.id.clone(),
        metrics: to_cri(metrics),
        container_metrics,
    })
}

/// ListPodSandboxMetrics: every ready pod and its live containers.
pub fn list(shared: &Shared) -> Result<Vec<cri::PodSandboxMetrics>, Status> {
    let ready = PodFilter {
        state: Some(SandboxState::Ready),
        ..Default::default()
    };
    shared
        .pods
        .list(&ready)
        .map_err(error::pod)?
        .iter()
        .map(|p| pod(shared, p))
        .collect()
}
