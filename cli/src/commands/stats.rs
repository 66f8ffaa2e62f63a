//! stats, statsp and top: what containers and pods use, from the CRI stats
//! calls (crictl's columns for the first two), and `top`: pods by CPU or
//! memory with what they requested and are limited to beside what they
//! use (requests and limits from ListPodSandboxMetrics' spec metrics).

use std::collections::HashMap;
use std::time::Duration;

use berth_cli::client::CriClient;
use berth_cli::output::{self, Format};
use k8s_cri::v1 as cri;

use super::status_msg;

/// Bytes as Docker and crictl print them (go-units `HumanSize`: decimal
/// units, four significant digits).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    // %.4g: four significant digits, trailing zeros dropped.
    let digits = if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let mut s = format!("{v:.digits$}");
    // 999.95 kB rounds to 1000.0: that is 1 MB.
    if s.starts_with("1000") && i + 1 < UNITS.len() {
        s = "1".into();
        i += 1;
    }
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}{}", UNITS[i])
}

fn val(v: &Option<cri::UInt64Value>) -> Option<u64> {
    v.as_ref().map(|v| v.value)
}

/// CPU as crictl shows it: percent of one core.
fn cpu_percent(cpu: &Option<cri::CpuUsage>) -> String {
    let nano = cpu.as_ref().and_then(|c| val(&c.usage_nano_cores));
    format!("{:.2}", nano.unwrap_or(0) as f64 / 1e7)
}

fn mem(m: &Option<cri::MemoryUsage>) -> String {
    human_size(
        m.as_ref()
            .and_then(|m| val(&m.working_set_bytes))
            .unwrap_or(0),
    )
}

/// What `stats` selects.
#[derive(Debug, Default)]
pub struct StatsOptions {
    pub all: bool,
    pub id: Option<String>,
    pub pod: Option<String>,
    pub labels: Vec<(String, String)>,
    pub watch: Option<Duration>,
}

async fn stats_once(c: &mut CriClient, o: &StatsOptions, fmt: Format) -> Result<String, String> {
    let filter = cri::ContainerStatsFilter {
        id: o.id.clone().unwrap_or_default(),
        pod_sandbox_id: o.pod.clone().unwrap_or_default(),
        label_selector: o.labels.iter().cloned().collect(),
    };
    let mut stats = c
        .runtime
        .list_container_stats(cri::ListContainerStatsRequest {
            filter: Some(filter),
        })
        .await
        .map_err(status_msg)?
        .into_inner()
        .stats;
    if !o.all {
        // Running containers only, as crictl (created ones have no
        // process to account for yet).
        let running = c
            .runtime
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    state: Some(cri::ContainerStateValue {
                        state: cri::ContainerState::ContainerRunning as i32,
                    }),
                    ..Default::default()
                }),
            })
            .await
            .map_err(status_msg)?
            .into_inner()
            .containers;
        stats.retain(|s| {
            let id = s.attributes.as_ref().map(|a| a.id.as_str());
            running.iter().any(|c| Some(c.id.as_str()) == id)
        });
    }
    Ok(output::render(fmt, &stats, || {
        let rows: Vec<Vec<String>> = stats
            .iter()
            .map(|s| {
                let a = s.attributes.clone().unwrap_or_default();
                let layer = s.writable_layer.as_ref();
                vec![
                    a.id.chars().take(13).collect(),
                    a.metadata.map(|m| m.name).unwrap_or_default(),
                    cpu_percent(&s.cpu),
                    mem(&s.memory),
                    human_size(layer.and_then(|l| val(&l.used_bytes)).unwrap_or(0)),
                    layer
                        .and_then(|l| val(&l.inodes_used))
                        .unwrap_or(0)
                        .to_string(),
                ]
            })
            .collect();
        output::table(
            &["CONTAINER", "NAME", "CPU %", "MEM", "DISK", "INODES"],
            &rows,
        )
    }))
}

/// `berth stats`.
pub async fn stats(c: &mut CriClient, o: &StatsOptions, fmt: Format) -> Result<String, String> {
    match o.watch {
        None => stats_once(c, o, fmt).await,
        Some(every) => loop {
            let out = stats_once(c, o, fmt).await?;
            redraw(&out);
            tokio::time::sleep(every).await;
        },
    }
}

/// Clears the terminal and prints `out` (watch mode).
fn redraw(out: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = write!(stdout, "\x1b[2J\x1b[H{out}");
    let _ = stdout.flush();
}

async fn pod_stats(
    c: &mut CriClient,
    id: Option<&str>,
) -> Result<Vec<cri::PodSandboxStats>, String> {
    Ok(c.runtime
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
            filter: Some(cri::PodSandboxStatsFilter {
                id: id.unwrap_or_default().to_owned(),
                ..Default::default()
            }),
        })
        .await
        .map_err(status_msg)?
        .into_inner()
        .stats)
}

async fn statsp_once(c: &mut CriClient, id: Option<&str>, fmt: Format) -> Result<String, String> {
    let stats = pod_stats(c, id).await?;
    Ok(output::render(fmt, &stats, || {
        let rows: Vec<Vec<String>> = stats
            .iter()
            .map(|s| {
                let a = s.attributes.clone().unwrap_or_default();
                let l = s.linux.clone().unwrap_or_default();
                vec![
                    a.metadata.map(|m| m.name).unwrap_or_default(),
                    a.id.chars().take(13).collect(),
                    cpu_percent(&l.cpu),
                    mem(&l.memory),
                ]
            })
            .collect();
        output::table(&["POD", "POD ID", "CPU %", "MEM"], &rows)
    }))
}

/// `berth statsp`.
pub async fn statsp(
    c: &mut CriClient,
    id: Option<&str>,
    watch: Option<Duration>,
    fmt: Format,
) -> Result<String, String> {
    match watch {
        None => statsp_once(c, id, fmt).await,
        Some(every) => loop {
            let out = statsp_once(c, id, fmt).await?;
            redraw(&out);
            tokio::time::sleep(every).await;
        },
    }
}

/// What `top` sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortBy {
    Cpu,
    Memory,
}

/// One pod's line in `top`.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct PodUse {
    pub namespace: String,
    pub pod: String,
    pub id: String,
    /// Cores used now (from the last two samples).
    pub cpu_used: f64,
    /// Cores requested (CPU shares / 1024 of its containers).
    pub cpu_requested: f64,
    /// Cores its containers are held to; None if any is unlimited.
    pub cpu_limit: Option<f64>,
    pub memory_used: u64,
    /// Memory its containers are held to; None if any is unlimited.
    pub memory_limit: Option<u64>,
}

/// A pod's requests and limits, summed over its containers, from their
/// spec metrics (keyed by pod id).
fn promised(
    metrics: &[cri::PodSandboxMetrics],
) -> HashMap<String, (f64, Option<f64>, Option<u64>)> {
    let mut out = HashMap::new();
    for p in metrics {
        let mut req = 0.0;
        let mut cpu_limit = Some(0.0);
        let mut mem_limit = Some(0u64);
        for c in &p.container_metrics {
            let get = |name: &str| {
                c.metrics
                    .iter()
                    .find(|m| m.name == name)
                    .and_then(|m| val(&m.value))
            };
            // kubelet writes 2 shares for "no request".
            if let Some(s) = get("container_spec_cpu_shares").filter(|s| *s > 2) {
                req += s as f64 / 1024.0;
            }
            cpu_limit = match (
                cpu_limit,
                get("container_spec_cpu_quota"),
                get("container_spec_cpu_period"),
            ) {
                (Some(sum), Some(q), Some(p)) if p > 0 => Some(sum + q as f64 / p as f64),
                _ => None,
            };
            mem_limit = match (mem_limit, get("container_spec_memory_limit_bytes")) {
                (Some(sum), Some(l)) => Some(sum + l),
                _ => None,
            };
        }
        if p.container_metrics.is_empty() {
            cpu_limit = None;
            mem_limit = None;
        }
        out.insert(p.pod_sandbox_id.clone(), (req, cpu_limit, mem_limit));
    }
    out
}

/// The pods' use beside their requests and limits, sorted by `by`.
pub fn pod_use(
    stats: &[cri::PodSandboxStats],
    metrics: &[cri::PodSandboxMetrics],
    by: SortBy,
) -> Vec<PodUse> {
    let promised = promised(metrics);
    let mut rows: Vec<PodUse> = stats
        .iter()
        .map(|s| {
            let a = s.attributes.clone().unwrap_or_default();
            let m = a.metadata.unwrap_or_default();
            let l = s.linux.clone().unwrap_or_default();
            let (cpu_requested, cpu_limit, memory_limit) =
                promised.get(&a.id).copied().unwrap_or((0.0, None, None));
            PodUse {
                namespace: m.namespace,
                pod: m.name,
                id: a.id,
                cpu_used: l
                    .cpu
                    .as_ref()
                    .and_then(|c| val(&c.usage_nano_cores))
                    .unwrap_or(0) as f64
                    / 1e9,
                cpu_requested,
                cpu_limit,
                memory_used: l
                    .memory
                    .as_ref()
                    .and_then(|m| val(&m.working_set_bytes))
                    .unwrap_or(0),
                memory_limit,
            }
        })
        .collect();
    match by {
        SortBy::Cpu => rows.sort_by(|a, b| b.cpu_used.total_cmp(&a.cpu_used)),
        SortBy::Memory => rows.sort_by_key(|r| std::cmp::Reverse(r.memory_used)),
    }
    rows
}

fn cores(v: f64) -> String {
    format!("{:.0}m", v * 1000.0)
}

/// `berth top`.
pub async fn top(c: &mut CriClient, by: SortBy, fmt: Format) -> Result<String, String> {
    let stats = pod_stats(c, None).await?;
    let metrics = c
        .runtime
        .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
        .await
        .map_err(status_msg)?
        .into_inner()
        .pod_metrics;
    let rows = pod_use(&stats, &metrics, by);
    Ok(output::render(fmt, &rows, || {
        let none = || "-".to_owned();
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.namespace.clone(),
                    r.pod.clone(),
                    cores(r.cpu_used),
                    cores(r.cpu_requested),
                    r.cpu_limit.map_or_else(none, cores),
                    human_size(r.memory_used),
                    r.memory_limit.map_or_else(none, human_size),
                ]
            })
            .collect();
        output::table(
            &[
                "NAMESPACE",
                "POD",
                "CPU",
                "CPU REQ",
                "CPU LIM",
                "MEM",
                "MEM LIM",
            ],
            &table,
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_dockers() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(675_840), "675.8kB");
        assert_eq!(human_size(67_776_512), "67.78MB");
        assert_eq!(human_size(1_500_000_000), "1.5GB");
        assert_eq!(human_size(999_960), "1MB");
    }

    fn metric(name: &str, value: u64) -> cri::Metric {
        cri::Metric {
            name: name.into(),
            value: Some(cri::UInt64Value { value }),
            ..Default::default()
        }
    }

    fn pod_stats(id: &str, nano_cores: u64, ws: u64) -> cri::PodSandboxStats {
        cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: id.into(),
                metadata: Some(cri::PodSandboxMetadata {
                    name: format!("pod-{id}"),
                    namespace: "ns".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: Some(cri::CpuUsage {
                    usage_nano_cores: Some(cri::UInt64Value { value: nano_cores }),
                    ..Default::default()
                }),
                memory: Some(cri::MemoryUsage {
                    working_set_bytes: Some(cri::UInt64Value { value: ws }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            windows: None,
        }
    }

    #[test]
    fn top_sums_requests_and_limits_and_sorts() {
        let stats = [
            pod_stats("a", 250_000_000, 10),
            pod_stats("b", 750_000_000, 5),
        ];
        let metrics = [
            cri::PodSandboxMetrics {
                pod_sandbox_id: "a".into(),
                metrics: vec![],
                container_metrics: vec![
                    cri::ContainerMetrics {
                        container_id: "a1".into(),
                        metrics: vec![
                            metric("container_spec_cpu_shares", 512),
                            metric("container_spec_cpu_quota", 50_000),
                            metric("container_spec_cpu_period", 100_000),
                            metric("container_spec_memory_limit_bytes", 100),
                        ],
                    },
                    cri::ContainerMetrics {
                        container_id: "a2".into(),
                        metrics: vec![
                            metric("container_spec_cpu_shares", 256),
                            metric("container_spec_cpu_quota", 100_000),
                            metric("container_spec_cpu_period", 100_000),
                            metric("container_spec_memory_limit_bytes", 50),
                        ],
                    },
                ],
            },
            cri::PodSandboxMetrics {
                pod_sandbox_id: "b".into(),
                metrics: vec![],
                container_metrics: vec![cri::ContainerMetrics {
                    container_id: "b1".into(),
                    // No request (2 shares), no limits.
                    metrics: vec![metric("container_spec_cpu_shares", 2)],
                }],
            },
        ];
        let rows = pod_use(&stats, &metrics, SortBy::Cpu);
        assert_eq!(rows[0].id, "b");
        assert_eq!(rows[0].cpu_requested, 0.0);
        assert_eq!((rows[0].cpu_limit, rows[0].memory_limit), (None, None));
        assert_eq!(rows[1].cpu_requested, 0.75);
        assert_eq!(rows[1].cpu_limit, Some(1.5));
        assert_eq!(rows[1].memory_limit, Some(150));
        assert_eq!(rows[1].cpu_used, 0.25);
        let rows = pod_use(&stats, &metrics, SortBy::Memory);
        assert_eq!(rows[0].id, "a");
    }
}
