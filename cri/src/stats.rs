//! What berthd samples for the stats calls and the metrics endpoint:
//! which cgroup, writable layer and network namespace each live pod and
//! container has, and the tick that reads them all. Everything here reads
//! records from the store's cache and files under /sys and /proc: no
//! lifecycle lock is taken, so stats of a container being stopped answer
//! at once.

use std::path::Path;
use std::time::Duration;

use berth_containers::{ContainerRecord, Containers, State};
use berth_metrics::cgroup::Layout;
use berth_metrics::collector::{Collector, Sample, Target};
use berth_pod::{Pods, SandboxRecord, SandboxState};

use crate::config::MetricsConfig;

/// The samples of every live pod and container.
#[derive(Debug)]
pub struct Stats {
    collector: Collector,
    stats_interval: Duration,
    disk_interval: Duration,
}

fn container_key(id: &str) -> String {
    format!("c/{id}")
}

fn pod_key(id: &str) -> String {
    format!("p/{id}")
}

/// Whether a container has a cgroup and processes worth sampling.
pub fn is_live(rec: &ContainerRecord) -> bool {
    matches!(rec.state, State::Created | State::Running)
}

impl Stats {
    pub fn new(cgroup_root: &Path, config: &MetricsConfig) -> Stats {
        Stats {
            // An object the tick has not seen yet is read at most once per
            // tick (until the tick takes it over).
            collector: Collector::new(Layout::detect(cgroup_root), config.stats_interval),
            stats_interval: config.stats_interval,
            disk_interval: config.disk_interval,
        }
    }

    fn container_target(containers: &Containers, rec: &ContainerRecord) -> Target {
        Target {
            cgroup: is_live(rec)
                .then(|| berth_cgroups::cgroup_dir(&rec.cgroups_path))
                .flatten(),
            upper: Some(containers.upper_dir(&rec.id)),
            netns: None,
        }
    }

    fn pod_target(rec: &SandboxRecord) -> Target {
        let ready = rec.state == SandboxState::Ready;
        Target {
            cgroup: ready.then(|| rec.cgroup.clone()),
            upper: None,
            netns: if ready { rec.netns.clone() } else { None },
        }
    }

    /// The latest sample of a container (read now if the tick has not
    /// seen it yet).
    pub fn container(&self, containers: &Containers, rec: &ContainerRecord) -> Sample {
        self.collector.get(
            &container_key(&rec.id),
            &Self::container_target(containers, rec),
        )
    }

    /// How often the tick samples, and how often it also walks writable
    /// layers and re-reads cgroup settings (the slow clock).
    pub fn intervals(&self) -> (Duration, Duration) {
        (self.stats_interval, self.disk_interval)
    }

    /// A container's resources were updated: its limits are read again
    /// on the next tick rather than on the slow clock.
    pub fn settings_changed(&self, container_id: &str) {
        self.collector
            .settings_changed(&container_key(container_id));
    }

    /// The latest sample of a pod's own cgroup and network namespace.
    pub fn pod(&self, rec: &SandboxRecord) -> Sample {
        self.collector
            .get(&pod_key(&rec.id), &Self::pod_target(rec))
    }

    /// One tick: samples every ready pod and live container; the writable
    /// layers are walked and cgroup settings re-read too when `slow`.
    pub fn sample_all<N: berth_pod::PodNetwork>(
        &self,
        pods: &Pods<N>,
        containers: &Containers,
        slow: bool,
    ) {
        let mut targets = Vec::new();
        match pods.list(&berth_pod::PodFilter::default()) {
            Ok(pods) => targets.extend(
                pods.iter()
                    .filter(|p| p.state == SandboxState::Ready)
                    .map(|p| (pod_key(&p.id), Self::pod_target(p))),
            ),
            Err(e) => tracing::warn!(error = %e, "stats: listing pods"),
        }
        match containers.list(&Default::default()) {
            Ok(cs) => targets.extend(
                cs.iter()
                    .filter(|c| is_live(c))
                    .map(|c| (container_key(&c.id), Self::container_target(containers, c))),
            ),
            Err(e) => tracing::warn!(error = %e, "stats: listing containers"),
        }
        self.collector.sample_all(&targets, slow);
    }
}
