//! berthd's own health, as Prometheus families that the code paths update
//! as events happen: CRI calls (count by method and gRPC code, latency),
//! image pulls, CNI operations and the phases of a pod's start. State that
//! is read rather than counted (pods and containers by state, shims,
//! per-object use) is encoded at scrape time by berthd's collector.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// One label set: (name, value) pairs.
pub type Labels = Vec<(&'static str, String)>;

type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Latency buckets from 0.5 ms to ~16 s (doubling): CRI calls run from
/// sub-millisecond lists to pulls and stops of many seconds.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Buckets from 10 ms to ~5 min (doubling), for pulls.
fn slow() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 15))
}

/// The families berthd updates as it works.
#[derive(Debug)]
pub struct Health {
    pub cri_requests: Family<Labels, Counter>,
    pub cri_latency: Histograms,
    pub pulls: Family<Labels, Counter>,
    pub pull_duration: Histogram,
    pub pulls_in_progress: Gauge,
    pub cni_operations: Family<Labels, Counter>,
    pub cni_latency: Histograms,
    pub pod_start_phase: Histograms,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            cri_requests: Family::default(),
            cri_latency: Family::new_with_constructor(latency),
            pulls: Family::default(),
            pull_duration: slow(),
            pulls_in_progress: Gauge::default(),
            cni_operations: Family::default(),
            cni_latency: Family::new_with_constructor(latency),
            pod_start_phase: Family::new_with_constructor(latency),
        }
    }
}

/// The phases of a pod's start, as `berth_pod_start_phase_seconds` labels
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// RunPodSandbox without its network setup: namespaces, cgroup, files.
    Sandbox,
    /// The CNI ADD of RunPodSandbox.
    Network,
    /// PullImage.
    ImagePull,
    /// CreateContainer.
    ContainerCreate,
    /// StartContainer.
    ContainerStart,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Sandbox => "sandbox",
            Phase::Network => "network",
            Phase::ImagePull => "image_pull",
            Phase::ContainerCreate => "container_create",
            Phase::ContainerStart => "container_start",
        }
    }
}

impl Health {
    /// Registers every family under `registry` (names prefixed `berth_`
    /// by the caller's registry).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "cri_requests",
            "CRI calls answered, by method and gRPC status code",
            self.cri_requests.clone(),
        );
        registry.register(
            "cri_request_duration_seconds",
            "Time to answer a CRI call, by method",
            self.cri_latency.clone(),
        );
        registry.register(
            "image_pulls",
            "Image pulls finished, by result (success or the gRPC code of the failure)",
            self.pulls.clone(),
        );
        registry.register(
            "image_pull_duration_seconds",
            "Time an image pull took, successful or not",
            self.pull_duration.clone(),
        );
        registry.register(
            "image_pulls_in_progress",
            "Image pulls running now",
            self.pulls_in_progress.clone(),
        );
        registry.register(
            "cni_operations",
            "CNI ADD and DEL operations, by operation and result",
            self.cni_operations.clone(),
        );
        registry.register(
            "cni_operation_duration_seconds",
            "Time a CNI ADD or DEL took (the whole plugin chain)",
            self.cni_latency.clone(),
        );
        registry.register(
            "pod_start_phase_seconds",
            "Time each phase of starting a pod took: sandbox, network, image_pull, container_create, container_start",
            self.pod_start_phase.clone(),
        );
    }

    /// A CRI call answered with gRPC `code` after `seconds`.
    pub fn cri_call(&self, method: &str, code: &str, seconds: f64) {
        self.cri_requests
            .get_or_create(&vec![
                ("method", method.to_owned()),
                ("code", code.to_owned()),
            ])
            .inc();
        self.cri_latency
            .get_or_create(&vec![("method", method.to_owned())])
            .observe(seconds);
    }

    /// A CNI ADD or DEL that took `seconds`; `ok` if every plugin
    /// succeeded.
    pub fn cni(&self, op: &str, ok: bool, seconds: f64) {
        let result = if ok { "success" } else { "failure" };
        self.cni_operations
            .get_or_create(&vec![("op", op.to_owned()), ("result", result.to_owned())])
            .inc();
        self.cni_latency
            .get_or_create(&vec![("op", op.to_owned())])
            .observe(seconds);
    }

    /// A phase of a pod's start took `seconds`.
    pub fn phase(&self, phase: Phase, seconds: f64) {
        self.pod_start_phase
            .get_or_create(&vec![("phase", phase.as_str().to_owned())])
            .observe(seconds);
    }

    /// A pull begins: `berth_image_pulls_in_progress` counts it until
    /// the returned guard is finished or dropped (a cancelled pull).
    pub fn pull_started(&self) -> PullInProgress<'_> {
        self.pulls_in_progress.inc();
        PullInProgress {
            health: self,
            started: std::time::Instant::now(),
        }
    }

    /// A pull ended with `result` ("success" or a gRPC code name).
    pub fn pull_done(&self, result: &str, seconds: f64) {
        self.pulls
            .get_or_create(&vec![("result", result.to_owned())])
            .inc();
        self.pull_duration.observe(seconds);
    }
}

/// A pull under way; see [`Health::pull_started`].
#[derive(Debug)]
pub struct PullInProgress<'a> {
    health: &'a Health,
    started: std::time::Instant,
}

impl PullInProgress<'_> {
    /// The pull ended with `result` ("success" or a gRPC code name); its
    /// time goes to the pull histogram and, as `image_pull`, to the pod
    /// start phases.
    pub fn finish(self, result: &str) {
        let took = self.started.elapsed().as_secs_f64();
        self.health.pull_done(result, took);
        self.health.phase(Phase::ImagePull, took);
    }
}

impl Drop for PullInProgress<'_> {
    fn drop(&mut self) {
        self.health.pulls_in_progress.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_encode_with_their_labels() {
        let h = Health::default();
        let mut r = Registry::with_prefix("berth");
        h.register(&mut r);
        h.cri_call("RunPodSandbox", "OK", 0.002);
        h.cri_call("RunPodSandbox", "NotFound", 0.0001);
        h.phase(Phase::Network, 0.05);
        h.pull_done("success", 1.5);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        assert!(
            text.contains("berth_cri_requests_total{method=\"RunPodSandbox\",code=\"OK\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("berth_cri_request_duration_seconds_count{method=\"RunPodSandbox\"} 2")
        );
        assert!(
            text.contains("berth_pod_start_phase_seconds_bucket{le=\"0.064\",phase=\"network\"} 1")
                || text.contains(
                    "berth_pod_start_phase_seconds_bucket{phase=\"network\",le=\"0.064\"} 1"
                ),
            "{text}"
        );
        assert!(text.contains("berth_image_pulls_total{result=\"success\"} 1"));
        assert!(text.ends_with("# EOF\n"));

        let pull = h.pull_started();
        assert_eq!(h.pulls_in_progress.get(), 1);
        pull.finish("NotFound");
        assert_eq!(h.pulls_in_progress.get(), 0);
        drop(h.pull_started());
        assert_eq!(h.pulls_in_progress.get(), 0);
    }
}
