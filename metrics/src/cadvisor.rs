//! A sample as the cAdvisor-named metrics kubelet exposes on
//! `/metrics/cadvisor` when it reads pod and container stats from the
//! runtime (`PodAndContainerStatsFromCRI`): the CRI's ListMetricDescriptors
//! and ListPodSandboxMetrics carry them. Names, help and label keys follow
//! cAdvisor's; every metric has the base labels
//! `container, id, image, name, namespace, pod` (cAdvisor's, so kubelet's
//! and the community's dashboards and rules keep working) followed by its
//! own (`cpu`, `interface`, `failure_type`, `scope`).
//!
//! The CRI carries values as unsigned integers: seconds are whole seconds
//! (CPU time is rounded down, as CRI-O does).

use crate::collector::Sample;

/// A metric's kind, as the CRI's `MetricType` has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One descriptor: what ListMetricDescriptors returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// Label keys after the base ones.
    pub extra: &'static [&'static str],
}

/// The label keys every metric starts with, in this order.
pub const BASE_LABELS: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

const NET: &[&str] = &["interface"];

macro_rules! descriptors {
    ($($name:literal, $kind:ident, $extra:expr, $help:literal;)*) => {
        /// Every metric berth reports, in the order it reports them.
        pub const DESCRIPTORS: &[Descriptor] = &[$(Descriptor {
            name: $name,
            help: $help,
            kind: Kind::$kind,
            extra: $extra,
        }),*];
    };
}

descriptors! {
    "container_cpu_usage_seconds_total", Counter, &["cpu"], "Cumulative CPU time consumed in seconds.";
    "container_cpu_user_seconds_total", Counter, &[], "Cumulative user CPU time consumed in seconds.";
    "container_cpu_system_seconds_total", Counter, &[], "Cumulative system CPU time consumed in seconds.";
    "container_cpu_cfs_periods_total", Counter, &[], "Number of elapsed enforcement period intervals.";
    "container_cpu_cfs_throttled_periods_total", Counter, &[], "Number of throttled period intervals.";
    "container_cpu_cfs_throttled_seconds_total", Counter, &[], "Total time duration the container has been throttled.";
    "container_memory_usage_bytes", Gauge, &[], "Current memory usage in bytes, including all memory regardless of when it was accessed.";
    "container_memory_working_set_bytes", Gauge, &[], "Current working set in bytes.";
    "container_memory_rss", Gauge, &[], "Size of RSS in bytes.";
    "container_memory_cache", Gauge, &[], "Number of bytes of page cache memory.";
    "container_memory_mapped_file", Gauge, &[], "Size of memory mapped files in bytes.";
    "container_memory_failures_total", Counter, &["failure_type", "scope"], "Cumulative count of memory allocation failures.";
    "container_oom_events_total", Counter, &[], "Count of out of memory events observed for the container.";
    "container_processes", Gauge, &[], "Number of processes running inside the container.";
    "container_spec_memory_limit_bytes", Gauge, &[], "Memory limit for the container in bytes.";
    "container_spec_cpu_shares", Gauge, &[], "CPU share of the container.";
    "container_spec_cpu_period", Gauge, &[], "CPU period of the container.";
    "container_spec_cpu_quota", Gauge, &[], "CPU quota of the container.";
    "container_fs_usage_bytes", Gauge, &[], "Number of bytes that are consumed by the container on this filesystem.";
    "container_fs_inodes_total", Gauge, &[], "Number of inodes used by the container on this filesystem.";
    "container_network_receive_bytes_total", Counter, NET, "Cumulative count of bytes received.";
    "container_network_receive_packets_total", Counter, NET, "Cumulative count of packets received.";
    "container_network_receive_packets_dropped_total", Counter, NET, "Cumulative count of packets dropped while receiving.";
    "container_network_receive_errors_total", Counter, NET, "Cumulative count of errors encountered while receiving.";
    "container_network_transmit_bytes_total", Counter, NET, "Cumulative count of bytes transmitted.";
    "container_network_transmit_packets_total", Counter, NET, "Cumulative count of packets transmitted.";
    "container_network_transmit_packets_dropped_total", Counter, NET, "Cumulative count of packets dropped while transmitting.";
    "container_network_transmit_errors_total", Counter, NET, "Cumulative count of errors encountered while transmitting.";
}

/// One value of one metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    /// When the value was read, in nanoseconds since the epoch.
    pub at: i64,
    /// The base label values, then the metric's own.
    pub labels: Vec<String>,
    pub value: u64,
}

fn kind_of(name: &str) -> Kind {
    DESCRIPTORS
        .iter()
        .find(|d| d.name == name)
        .map_or(Kind::Gauge, |d| d.kind)
}

struct Out<'a> {
    base: &'a [String; 6],
    metrics: Vec<Metric>,
}

impl Out<'_> {
    fn push(&mut self, name: &'static str, at: i64, extra: &[&str], value: u64) {
        debug_assert!(
            DESCRIPTORS
                .iter()
                .any(|d| d.name == name && d.extra.len() == extra.len())
        );
        let mut labels = self.base.to_vec();
        labels.extend(extra.iter().map(|s| (*s).to_owned()));
        self.metrics.push(Metric {
            name,
            kind: kind_of(name),
            at,
            labels,
            value,
        });
    }
}

const NS_PER_S: u64 = 1_000_000_000;

/// The metrics of one sample, labelled `base` (values for
/// [`BASE_LABELS`]). What the sample lacks (no cgroup read, no layer
/// walked, no network namespace) is left out rather than reported as 0.
pub fn metrics(base: &[String; 6], s: &Sample) -> Vec<Metric> {
    let mut out = Out {
        base,
        metrics: Vec::new(),
    };
    let at = s.at;
    if let Some(c) = s.usage.cpu {
        out.push(
            "container_cpu_usage_seconds_total",
            at,
            &["total"],
            c.usage_ns / NS_PER_S,
        );
        out.push(
            "container_cpu_user_seconds_total",
            at,
            &[],
            c.user_ns / NS_PER_S,
        );
        out.push(
            "container_cpu_system_seconds_total",
            at,
            &[],
            c.system_ns / NS_PER_S,
        );
        if let Some(t) = c.throttling {
            out.push("container_cpu_cfs_periods_total", at, &[], t.periods);
            out.push(
                "container_cpu_cfs_throttled_periods_total",
                at,
                &[],
                t.throttled_periods,
            );
            out.push(
                "container_cpu_cfs_throttled_seconds_total",
                at,
                &[],
                t.throttled_ns / NS_PER_S,
            );
        }
    }
    if let Some(m) = s.usage.memory {
        out.push("container_memory_usage_bytes", at, &[], m.usage);
        out.push("container_memory_working_set_bytes", at, &[], m.working_set);
        out.push("container_memory_rss", at, &[], m.rss);
        out.push("container_memory_cache", at, &[], m.cache);
        out.push("container_memory_mapped_file", at, &[], m.mapped_file);
        // cAdvisor's split: major faults are pgmajfault, the rest pgfault.
        let minor = m.page_faults.saturating_sub(m.major_page_faults);
        out.push(
            "container_memory_failures_total",
            at,
            &["pgfault", "container"],
            minor,
        );
        out.push(
            "container_memory_failures_total",
            at,
            &["pgmajfault", "container"],
            m.major_page_faults,
        );
        out.push("container_oom_events_total", at, &[], m.oom_kills);
        if let Some(l) = m.limit {
            out.push("container_spec_memory_limit_bytes", at, &[], l);
        }
    }
    if let Some(p) = s.usage.pids {
        out.push("container_processes", at, &[], p);
    }
    if let Some(shares) = s.usage.limits.cpu_shares {
        out.push("container_spec_cpu_shares", at, &[], shares);
    }
    if let Some((quota, period)) = s.usage.limits.cpu_quota {
        out.push("container_spec_cpu_period", at, &[], period);
        out.push("container_spec_cpu_quota", at, &[], quota);
    }
    if let Some((at, d)) = s.disk {
        out.push("container_fs_usage_bytes", at, &[], d.bytes);
        out.push("container_fs_inodes_total", at, &[], d.inodes);
    }
    if let Some((at, ifaces)) = &s.net {
        for i in ifaces {
            let n = [i.name.as_str()];
            for (name, v) in [
                ("container_network_receive_bytes_total", i.rx_bytes),
                ("container_network_receive_packets_total", i.rx_packets),
                (
                    "container_network_receive_packets_dropped_total",
                    i.rx_dropped,
                ),
                ("container_network_receive_errors_total", i.rx_errors),
                ("container_network_transmit_bytes_total", i.tx_bytes),
                ("container_network_transmit_packets_total", i.tx_packets),
                (
                    "container_network_transmit_packets_dropped_total",
                    i.tx_dropped,
                ),
                ("container_network_transmit_errors_total", i.tx_errors),
            ] {
                out.push(name, *at, &n, v);
            }
        }
    }
    out.metrics
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::{Cpu, Limits, Memory, Throttling, Usage};
    use crate::disk::DiskUsage;
    use crate::netdev::Interface;

    fn base() -> [String; 6] {
        ["app", "/berth/pod-x/c1", "busybox:v1", "c1", "ns", "web"].map(String::from)
    }

    fn value(ms: &[Metric], name: &str, extra: &[&str]) -> Option<u64> {
        ms.iter()
            .find(|m| m.name == name && m.labels[6..] == *extra)
            .map(|m| m.value)
    }

    #[test]
    fn names_are_unique_and_label_counts_match_their_descriptors() {
        let mut names: Vec<_> = DESCRIPTORS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DESCRIPTORS.len());
        let s = Sample {
            at: 5,
            usage: Usage {
                cpu: Some(Cpu {
                    usage_ns: 2_999_999_999,
                    user_ns: 2_000_000_000,
                    system_ns: 999_999_999,
                    throttling: Some(Throttling {
                        periods: 10,
                        throttled_periods: 3,
                        throttled_ns: 1_500_000_000,
                    }),
                }),
                memory: Some(Memory {
                    usage: 100,
                    working_set: 80,
                    rss: 50,
                    cache: 30,
                    mapped_file: 7,
                    page_faults: 1000,
                    major_page_faults: 12,
                    limit: Some(4096),
                    oom_kills: 2,
                }),
                pids: Some(4),
                limits: Limits {
                    cpu_shares: Some(512),
                    cpu_quota: Some((50_000, 100_000)),
                },
            },
            nano_cores: None,
            disk: Some((
                6,
                DiskUsage {
                    bytes: 8192,
                    inodes: 3,
                },
            )),
            net: Some((
                7,
                vec![Interface {
                    name: "eth0".into(),
                    rx_bytes: 11,
                    rx_packets: 2,
                    tx_bytes: 22,
                    ..Default::default()
                }],
            )),
        };
        let ms = metrics(&base(), &s);
        for m in &ms {
            let d = DESCRIPTORS.iter().find(|d| d.name == m.name).unwrap();
            assert_eq!(m.labels.len(), BASE_LABELS.len() + d.extra.len(), "{m:?}");
            assert_eq!(m.kind, d.kind);
            assert_eq!(m.labels[..6], base());
        }
        // Every descriptor is used by a full sample.
        for d in DESCRIPTORS {
            assert!(ms.iter().any(|m| m.name == d.name), "{} unused", d.name);
        }
        assert_eq!(
            value(&ms, "container_cpu_usage_seconds_total", &["total"]),
            Some(2)
        );
        assert_eq!(
            value(&ms, "container_cpu_cfs_throttled_seconds_total", &[]),
            Some(1)
        );
        assert_eq!(
            value(
                &ms,
                "container_memory_failures_total",
                &["pgfault", "container"]
            ),
            Some(988)
        );
        assert_eq!(
            value(
                &ms,
                "container_memory_failures_total",
                &["pgmajfault", "container"]
            ),
            Some(12)
        );
        assert_eq!(value(&ms, "container_spec_cpu_quota", &[]), Some(50_000));
        assert_eq!(
            value(&ms, "container_network_transmit_bytes_total", &["eth0"]),
            Some(22)
        );
        let fs = ms
            .iter()
            .find(|m| m.name == "container_fs_usage_bytes")
            .unwrap();
        assert_eq!((fs.at, fs.value), (6, 8192));
        let net = ms
            .iter()
            .find(|m| m.name.starts_with("container_network"))
            .unwrap();
        assert_eq!(net.at, 7);
    }

    #[test]
    fn what_was_not_read_is_left_out() {
        let ms = metrics(&base(), &Sample::default());
        assert!(ms.is_empty(), "{ms:?}");
    }
}
