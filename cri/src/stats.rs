//! What berthd samples for the stats calls and the metrics endpoint:
//! which cgroup, writable layer and network namespace each live pod and
//! container has, and the tick that reads them all. Everything here reads
//! records from the store's cache and files under /sys and /proc: no
//! lifecycle lock is taken, so stats of a container being stopped answer
//! at once.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_containers::{ContainerRecord, State};
use berth_metrics::cgroup::Layout;
use berth_metrics::collector::{Collector, Sample, Target};
use berth_pod::{SandboxRecord, SandboxState};

use crate::config::MetricsConfig;
use crate::service::Shared;

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

    fn container_target(shared: &Shared, rec: &ContainerRecord) -> Target {
        Target {
            cgroup: is_live(rec)
                .then(|| berth_cgroups::cgroup_dir(&rec.cgroups_path))
                .flatten(),
            upper: Some(shared.containers.upper_dir(&rec.id)),
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
    pub fn container(&self, shared: &Shared, rec: &ContainerRecord) -> Sample {
        self.collector.get(
            &container_key(&rec.id),
            &Self::container_target(shared, rec),
        )
    }

    /// The latest sample of a pod's own cgroup and network namespace.
    pub fn pod(&self, rec: &SandboxRecord) -> Sample {
        self.collector
            .get(&pod_key(&rec.id), &Self::pod_target(rec))
    }

    /// One tick: samples every ready pod and live container; the writable
    /// layers are walked too when `walk_disk`.
    fn sample_all(&self, shared: &Shared, walk_disk: bool) {
        let mut targets = Vec::new();
        match shared.pods.list(&berth_pod::PodFilter::default()) {
            Ok(pods) => targets.extend(
                pods.iter()
                    .filter(|p| p.state == SandboxState::Ready)
                    .map(|p| (pod_key(&p.id), Self::pod_target(p))),
            ),
            Err(e) => tracing::warn!(error = %e, "stats: listing pods"),
        }
        match shared.containers.list(&Default::default()) {
            Ok(cs) => targets.extend(
                cs.iter()
                    .filter(|c| is_live(c))
                    .map(|c| (container_key(&c.id), Self::container_target(shared, c))),
            ),
            Err(e) => tracing::warn!(error = %e, "stats: listing containers"),
        }
        self.collector.sample_all(&targets, walk_disk);
    }
}

/// Samples on berthd's stats clock until the process ends. A tick that
/// overruns its period delays the next one rather than piling up.
pub async fn run(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.stats.stats_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_walk: Option<Instant> = None;
    loop {
        tick.tick().await;
        let walk = last_walk.is_none_or(|t| t.elapsed() >= shared.stats.disk_interval);
        if walk {
            last_walk = Some(Instant::now());
        }
        let s = shared.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || s.stats.sample_all(&s, walk)).await {
            tracing::warn!(error = %e, "stats tick failed");
        }
    }
}
