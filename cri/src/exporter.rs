//! berthd's Prometheus endpoint: the health families (updated as calls,
//! pulls and CNI operations happen) and, at each scrape, what is read
//! rather than counted: pods and containers by state, container starts
//! and exits, pull volumes, shims and their memory, berthd's own memory,
//! each pod's and container's use (from the stats samples), and node
//! accounting: what containers' cgroups are promised (CPU shares →
//! requests) and held to (quota, memory limit) beside what they use and
//! what the node has.
//!
//! Per-object series carry `namespace`, `pod`, `uid` (and `container`);
//! they are made from the live objects at each scrape, so a removed pod's
//! series are gone from the next one.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use berth_containers::State;
use berth_metrics::collector::Sample;
use berth_metrics::http::Endpoint;
use berth_metrics::procs;
use berth_pod::{PodFilter, SandboxRecord, SandboxState};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::service::Shared;
use crate::stats::is_live;

/// The scrape-time part of the exposition.
#[derive(Debug)]
pub struct Exporter {
    shared: Weak<Shared>,
}

type Labels = Vec<(&'static str, String)>;

/// One family being written.
struct Family<'a> {
    enc: MetricEncoder<'a>,
}

impl Family<'_> {
    fn gauge(&mut self, labels: &Labels, v: f64) -> fmt::Result {
        ConstGauge::new(v).encode(self.enc.encode_family(labels)?)
    }
    fn counter(&mut self, labels: &Labels, v: f64) -> fmt::Result {
        ConstCounter::new(v).encode(self.enc.encode_family(labels)?)
    }
}

/// Writes one family: its descriptor, then `body` writes its samples.
fn family(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    body: impl FnOnce(&mut Family<'_>) -> fmt::Result,
) -> fmt::Result {
    let e = enc.encode_descriptor(name, help, None, kind)?;
    body(&mut Family { enc: e })
}

fn pod_labels(p: &SandboxRecord) -> Labels {
    let m = &p.spec.metadata;
    vec![
        ("namespace", m.namespace.clone()),
        ("pod", m.name.clone()),
        ("uid", m.uid.clone()),
    ]
}

fn with(mut l: Labels, k: &'static str, v: impl Into<String>) -> Labels {
    l.push((k, v.into()));
    l
}

const NS: f64 = 1e9;

/// A live container's labels and latest sample.
struct Live {
    labels: Labels,
    sample: Sample,
}

impl Exporter {
    fn encode_all(&self, shared: &Shared, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        let enc = &mut enc;
        family(
            enc,
            "build_info",
            "berthd's version",
            MetricType::Gauge,
            |f| {
                f.gauge(
                    &vec![("version", env!("CARGO_PKG_VERSION").to_owned())],
                    1.0,
                )
            },
        )?;

        let pods = shared.pods.list(&PodFilter::default()).unwrap_or_default();
        let containers = shared
            .containers
            .list(&Default::default())
            .unwrap_or_default();
        family(
            enc,
            "pods",
            "Pod sandboxes, by state",
            MetricType::Gauge,
            |f| {
                for (state, name) in [
                    (SandboxState::Ready, "ready"),
                    (SandboxState::NotReady, "notready"),
                ] {
                    let n = pods.iter().filter(|p| p.state == state).count();
                    f.gauge(&vec![("state", name.to_owned())], n as f64)?;
                }
                Ok(())
            },
        )?;
        family(
            enc,
            "containers",
            "Containers, by state",
            MetricType::Gauge,
            |f| {
                for (state, name) in [
                    (State::Created, "created"),
                    (State::Running, "running"),
                    (State::Exited, "exited"),
                    (State::Unknown, "unknown"),
                ] {
                    let n = containers.iter().filter(|c| c.state == state).count();
                    f.gauge(&vec![("state", name.to_owned())], n as f64)?;
                }
                Ok(())
            },
        )?;
        let counters = shared.containers.counters();
        let (starts, failed) = counters.starts();
        family(
            enc,
            "container_starts",
            "StartContainer calls, by result",
            MetricType::Counter,
            |f| {
                f.counter(&vec![("result", "success".into())], starts as f64)?;
                f.counter(&vec![("result", "failure".into())], failed as f64)
            },
        )?;
        let exits = counters.exits();
        family(
            enc,
            "container_exits",
            "Containers that ended, by reason (Completed, Error, OOMKilled, Unknown)",
            MetricType::Counter,
            |f| {
                for (reason, n) in &exits {
                    f.counter(&vec![("reason", reason.clone())], *n as f64)?;
                }
                Ok(())
            },
        )?;
        let oom = exits
            .iter()
            .find(|(r, _)| r == "OOMKilled")
            .map_or(0, |(_, n)| *n);
        family(
            enc,
            "container_oom_kills",
            "Containers whose main process the kernel's OOM killer ended",
            MetricType::Counter,
            |f| f.counter(&vec![], oom as f64),
        )?;
        let pulls = shared.images.counters();
        for (name, help, v) in [
            (
                "image_pull_bytes",
                "Layer bytes received from registries",
                &pulls.bytes,
            ),
            (
                "image_layers_reused",
                "Layers a pull found already stored",
                &pulls.layers_reused,
            ),
            (
                "image_layers_fetched",
                "Layers a pull downloaded and unpacked",
                &pulls.layers_fetched,
            ),
        ] {
            family(enc, name, help, MetricType::Counter, |f| {
                f.counter(&vec![], v.load(Ordering::Relaxed) as f64)
            })?;
        }

        // Shims of this berthd (each in its directory under the state dir).
        let shims = procs::with_pid_files(
            &shared.config.daemon.state_dir.join("shims"),
            berth_shim::proto::PID_FILE,
        );
        let shim_rss: u64 = shims.iter().filter_map(|p| procs::rss(p)).sum();
        family(
            enc,
            "shims",
            "berth-shim processes (one per pod)",
            MetricType::Gauge,
            |f| f.gauge(&vec![], shims.len() as f64),
        )?;
        family(
            enc,
            "shim_resident_bytes",
            "Resident memory of all shims together",
            MetricType::Gauge,
            |f| f.gauge(&vec![], shim_rss as f64),
        )?;
        family(
            enc,
            "daemon_resident_bytes",
            "berthd's resident memory",
            MetricType::Gauge,
            |f| f.gauge(&vec![], procs::rss("self").unwrap_or(0) as f64),
        )?;

        // Per pod.
        let ready: Vec<&Arc<SandboxRecord>> = pods
            .iter()
            .filter(|p| p.state == SandboxState::Ready)
            .collect();
        let pod_samples: Vec<(Labels, Sample)> = ready
            .iter()
            .map(|p| (pod_labels(p), shared.stats.pod(p)))
            .collect();
        family(
            enc,
            "pod_cpu_usage_seconds",
            "CPU time a pod's cgroup used",
            MetricType::Counter,
            |f| {
                for (l, s) in &pod_samples {
                    if let Some(ns) = s.usage.cpu_ns() {
                        f.counter(l, ns as f64 / NS)?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            enc,
            "pod_memory_working_set_bytes",
            "A pod's working set (usage minus inactive file)",
            MetricType::Gauge,
            |f| {
                for (l, s) in &pod_samples {
                    if let Some(m) = s.usage.memory {
                        f.gauge(l, m.working_set as f64)?;
                    }
                }
                Ok(())
            },
        )?;
        for (name, help, rx) in [
            (
                "pod_network_receive_bytes",
                "Bytes a pod's interfaces received",
                true,
            ),
            (
                "pod_network_transmit_bytes",
                "Bytes a pod's interfaces sent",
                false,
            ),
        ] {
            family(enc, name, help, MetricType::Counter, |f| {
                for (l, s) in &pod_samples {
                    for i in s.net.iter().flat_map(|(_, n)| n) {
                        let v = if rx { i.rx_bytes } else { i.tx_bytes };
                        f.counter(&with(l.clone(), "interface", i.name.clone()), v as f64)?;
                    }
                }
                Ok(())
            })?;
        }

        // Per container.
        let by_id: std::collections::HashMap<&str, &Arc<SandboxRecord>> =
            ready.iter().map(|p| (p.id.as_str(), *p)).collect();
        let live: Vec<Live> = containers
            .iter()
            .filter(|c| is_live(c))
            .filter_map(|c| {
                let pod = by_id.get(c.pod_id.as_str())?;
                let name = c.config().metadata.as_ref().map(|m| m.name.clone());
                Some(Live {
                    labels: with(pod_labels(pod), "container", name.unwrap_or_default()),
                    sample: shared.stats.container(&shared.containers, c),
                })
            })
            .collect();
        type Pick = fn(&Sample) -> Option<f64>;
        let per_container: [(&str, &str, MetricType, Pick); 7] = [
            (
                "container_cpu_usage_seconds",
                "CPU time a container used",
                MetricType::Counter,
                |s| s.usage.cpu_ns().map(|n| n as f64 / NS),
            ),
            (
                "container_memory_working_set_bytes",
                "A container's working set (usage minus inactive file)",
                MetricType::Gauge,
                |s| s.usage.memory.map(|m| m.working_set as f64),
            ),
            (
                "container_memory_rss_bytes",
                "A container's anonymous memory",
                MetricType::Gauge,
                |s| s.usage.memory.map(|m| m.rss as f64),
            ),
            (
                "container_oom_events",
                "OOM kills inside a container's cgroup (any of its processes)",
                MetricType::Counter,
                |s| s.usage.memory.map(|m| m.oom_kills as f64),
            ),
            (
                "container_cpu_request_cores",
                "CPU a container requested (from its cgroup's CPU shares)",
                MetricType::Gauge,
                |s| s.usage.limits.cpu_request_cores(),
            ),
            (
                "container_cpu_limit_cores",
                "CPU a container is held to (its CFS quota); absent when unlimited",
                MetricType::Gauge,
                |s| s.usage.limits.cpu_limit_cores(),
            ),
            (
                "container_memory_limit_bytes",
                "Memory a container is held to; absent when unlimited",
                MetricType::Gauge,
                |s| s.usage.memory.and_then(|m| m.limit).map(|l| l as f64),
            ),
        ];
        for (name, help, kind, pick) in per_container {
            family(enc, name, help, kind, |f| {
                for c in &live {
                    if let Some(v) = pick(&c.sample) {
                        if kind == MetricType::Counter {
                            f.counter(&c.labels, v)?;
                        } else {
                            f.gauge(&c.labels, v)?;
                        }
                    }
                }
                Ok(())
            })?;
        }

        let (cpus, mem) = procs::capacity();
        family(
            enc,
            "node_cpu_capacity_cores",
            "CPUs the node has online",
            MetricType::Gauge,
            |f| f.gauge(&vec![], cpus as f64),
        )?;
        family(
            enc,
            "node_memory_capacity_bytes",
            "Memory the node has",
            MetricType::Gauge,
            |f| f.gauge(&vec![], mem as f64),
        )?;
        Ok(())
    }
}

impl Collector for Exporter {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        match self.shared.upgrade() {
            Some(shared) => self.encode_all(&shared, encoder),
            None => Ok(()),
        }
    }
}

/// The registry berthd serves: `berth_`-prefixed health families and the
/// scrape-time exporter.
pub fn registry(shared: &Arc<Shared>) -> Registry {
    let mut r = Registry::with_prefix("berth");
    shared.health.register(&mut r);
    r.register_collector(Box::new(Exporter {
        shared: Arc::downgrade(shared),
    }));
    r
}

/// Where berthd writes the endpoint's address when it took a free port.
pub const ADDRESS_FILE: &str = "metrics.addr";

/// Binds the endpoint (when `[metrics] address` is set) and serves it on
/// a task; returns that task. The bound address goes to
/// `<state_dir>/metrics.addr`.
pub async fn start(
    shared: &Arc<Shared>,
) -> std::io::Result<Option<(Arc<Endpoint>, tokio::task::JoinHandle<()>)>> {
    // The config was validated at load; a bad address cannot reach here.
    let Some(addr) = shared
        .config
        .metrics
        .socket_addr()
        .map_err(std::io::Error::other)?
    else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let file = shared.config.daemon.state_dir.join(ADDRESS_FILE);
    berth_util::fs::write_atomic(&file, format!("{bound}\n").as_bytes(), 0o644)?;
    tracing::info!(address = %bound, "metrics endpoint listening");
    let endpoint = Arc::new(Endpoint::new(registry(shared)));
    let task = tokio::spawn(berth_metrics::http::serve(listener, endpoint.clone()));
    Ok(Some((endpoint, task)))
}
