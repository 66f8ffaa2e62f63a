//! ContainerStats, ListContainerStats, PodSandboxStats and
//! ListPodSandboxStats: the collector's latest samples as CRI messages,
//! each part stamped with the time it was read.

use std::sync::Arc;
use std::time::Instant;

use k8s_cri::v1 as cri;
use tonic::Status;

use berth_containers::ContainerRecord;
use berth_metrics::collector::Sample;
use berth_pod::{PodFilter, SandboxRecord, SandboxState};

use super::Shared;
use crate::error;
use crate::stats::is_live;

fn v(value: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value })
}

fn cpu(s: &Sample) -> Option<cri::CpuUsage> {
    let c = s.usage.cpu?;
    Some(cri::CpuUsage {
        timestamp: s.at,
        usage_core_nano_seconds: v(c.usage_ns),
        usage_nano_cores: s.nano_cores.and_then(v),
    })
}

fn memory(s: &Sample) -> Option<cri::MemoryUsage> {
    let m = s.usage.memory?;
    Some(cri::MemoryUsage {
        timestamp: s.at,
        working_set_bytes: v(m.working_set),
        available_bytes: m.available().and_then(v),
        usage_bytes: v(m.usage),
        rss_bytes: v(m.rss),
        page_faults: v(m.page_faults),
        major_page_faults: v(m.major_page_faults),
    })
}

/// One container's stats.
pub fn container(shared: &Shared, rec: &ContainerRecord) -> cri::ContainerStats {
    let s = shared.stats.container(&shared.containers, rec);
    // A container that has exited since its last sample has no cgroup
    // left: its last CPU and memory figures are no longer its use.
    let live = is_live(rec);
    let cfg = rec.config();
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: rec.id.clone(),
            metadata: cfg.metadata.clone(),
            labels: cfg.labels.clone(),
            annotations: cfg.annotations.clone(),
        }),
        cpu: cpu(&s).filter(|_| live),
        memory: memory(&s).filter(|_| live),
        writable_layer: s.disk.map(|(at, d)| cri::FilesystemUsage {
            timestamp: at,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: shared.containers.root().to_string_lossy().into_owned(),
            }),
            used_bytes: v(d.bytes),
            inodes_used: v(d.inodes),
        }),
        swap: None,
    }
}

fn network(s: &Sample) -> Option<cri::NetworkUsage> {
    let (at, ifs) = s.net.as_ref()?;
    let usage = |i: &berth_metrics::netdev::Interface| cri::NetworkInterfaceUsage {
        name: i.name.clone(),
        rx_bytes: v(i.rx_bytes),
        rx_errors: v(i.rx_errors),
        tx_bytes: v(i.tx_bytes),
        tx_errors: v(i.tx_errors),
    };
    Some(cri::NetworkUsage {
        timestamp: *at,
        // kubelet's default interface is the one CNI names eth0.
        default_interface: ifs.iter().find(|i| i.name == "eth0").map(usage),
        interfaces: ifs.iter().map(usage).collect(),
    })
}

/// One pod's stats: its own cgroup and network, and its live containers.
pub fn pod(shared: &Shared, rec: &SandboxRecord) -> Result<cri::PodSandboxStats, Status> {
    let s = shared.stats.pod(rec);
    let containers = shared
        .containers
        .of_pod(&rec.id)
        .map_err(error::container)?
        .iter()
        .filter(|c| is_live(c))
        .map(|c| container(shared, c))
        .collect();
    Ok(cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: rec.id.clone(),
            metadata: Some(super::pod::metadata(&rec.spec.metadata)),
            labels: super::pod::map(&rec.spec.labels),
            annotations: super::pod::map(&rec.spec.annotations),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: cpu(&s),
            memory: memory(&s),
            network: network(&s),
            process: s.usage.pids.map(|p| cri::ProcessUsage {
                timestamp: s.at,
                process_count: v(p),
            }),
            containers,
        }),
        windows: None,
    })
}

/// ListContainerStats: the live (created or running) containers the
/// filter matches; exited ones have no cgroup left to report.
pub fn list_containers(
    shared: &Shared,
    f: Option<cri::ContainerStatsFilter>,
) -> Result<Vec<cri::ContainerStats>, Status> {
    let filter = f
        .map(|f| berth_containers::ContainerFilter {
            id: Some(f.id).filter(|s| !s.is_empty()),
            state: None,
            pod_id: Some(f.pod_sandbox_id).filter(|s| !s.is_empty()),
            labels: f.label_selector,
        })
        .unwrap_or_default();
    Ok(shared
        .containers
        .list(&filter)
        .map_err(error::container)?
        .iter()
        .filter(|c| is_live(c))
        .map(|c| container(shared, c))
        .collect())
}

/// ListPodSandboxStats: the ready pods the filter matches.
pub fn list_pods(
    shared: &Shared,
    f: Option<cri::PodSandboxStatsFilter>,
) -> Result<Vec<cri::PodSandboxStats>, Status> {
    let filter = f
        .map(|f| PodFilter {
            id: Some(f.id).filter(|s| !s.is_empty()),
            state: Some(SandboxState::Ready),
            labels: f.label_selector,
        })
        .unwrap_or(PodFilter {
            state: Some(SandboxState::Ready),
            ..Default::default()
        });
    shared
        .pods
        .list(&filter)
        .map_err(error::pod)?
        .iter()
        .map(|p| pod(shared, p))
        .collect()
}

/// Samples on berthd's stats clock until the process ends. A tick that
/// overruns its period delays the next one rather than piling up.
pub async fn run(shared: Arc<Shared>) {
    let (every, slow_every) = shared.stats.intervals();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_slow: Option<Instant> = None;
    loop {
        tick.tick().await;
        let slow = last_slow.is_none_or(|t| t.elapsed() >= slow_every);
        if slow {
            last_slow = Some(Instant::now());
        }
        let s = shared.clone();
        let pass = move || {
            s.stats.sample_all(&s.pods, &s.containers, slow);
            // What the tick, the stats calls and the scrapes since the last
            // tick freed goes back to the kernel: at 250 pods, without
            // this, berthd kept megabytes of freed buffers resident.
            crate::memory::release_freed();
        };
        if let Err(e) = tokio::task::spawn_blocking(pass).await {
            tracing::warn!(error = %e, "stats tick failed");
        }
    }
}
