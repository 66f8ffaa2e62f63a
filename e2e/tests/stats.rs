//! The CRI stats calls end to end, as root: real pods and containers
//! doing known work (memory held in tmpfs, a busy loop, bytes sent
//! between two pods, files written to the writable layer), read through
//! ContainerStats, ListContainerStats, PodSandboxStats and
//! ListPodSandboxStats, and checked against the truth and against the
//! cgroup files themselves.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_e2e::fixture;
use berth_e2e::root_or_skip;
use berth_e2e::setup::{Setup, setup_with};
use k8s_cri::v1::*;
use tonic::Code;

const MIB: u64 = 1024 * 1024;

/// A daemon sampling every second, with room in the pod's /dev/shm.
async fn scene(tag: &str) -> Setup {
    setup_with(tag, "berth", fixture::busybox(), |b| {
        b.config("metrics", "stats_interval", "\"1s\"")
            .config("metrics", "disk_interval", "\"1s\"")
            .config("pod", "shm_size_mib", "256")
    })
    .await
}

/// Polls `read` until `ok` holds for its value (at most 30 s: two sampling
/// periods on a loaded machine, with margin); returns that value.
async fn until<T: std::fmt::Debug, F: Future<Output = T>>(
    what: &str,
    mut read: impl FnMut() -> F,
    ok: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = read().await;
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: last seen {v:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn container_stats(s: &Setup, id: &str) -> ContainerStats {
    s.c.runtime
        .clone()
        .container_stats(ContainerStatsRequest {
            container_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap()
}

async fn pod_stats(s: &Setup, id: &str) -> PodSandboxStats {
    s.c.runtime
        .clone()
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap()
}

fn working_set(c: &ContainerStats) -> u64 {
    c.memory
        .as_ref()
        .and_then(|m| m.working_set_bytes.as_ref())
        .map_or(0, |v| v.value)
}

fn nano_cores(c: &ContainerStats) -> u64 {
    c.cpu
        .as_ref()
        .and_then(|m| m.usage_nano_cores.as_ref())
        .map_or(0, |v| v.value)
}

/// The host path of a cgroup v1 controller's directory for a container.
fn cgroup_dir(s: &Setup, controller: &str, pod: &str, id: &str) -> PathBuf {
    let parent = s.e.d.cgroup_parent.clone().unwrap();
    PathBuf::from(format!(
        "/sys/fs/cgroup/{controller}{parent}/berth-{pod}/{id}"
    ))
}

fn read_u64(p: PathBuf) -> u64 {
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .parse()
        .unwrap()
}

async fn second_pod(s: &mut Setup, name: &str) -> (String, String) {
    let config = PodSandboxConfig {
        log_directory: s.pod_config.log_directory.clone(),
        ..berth_e2e::podnet::pod_config(name)
    };
    let id =
        s.c.runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: "berth".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
    let ip =
        s.c.runtime
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap()
            .network
            .unwrap()
            .ip;
    (id, ip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_follow_memory_cpu_disk_and_processes() {
    if !root_or_skip("stats_follow_memory_cpu_disk_and_processes") {
        return;
    }
    let mut s = scene("stats-work").await;
    let pod = s.pod.clone();
    // 96 MiB held in the pod's /dev/shm (tmpfs: charged to the writer's
    // cgroup, never reclaimable without swap), 4 MiB in the writable layer.
    let mem = s
        .run(
            "mem",
            &[
                "sh",
                "-c",
                "dd if=/dev/zero of=/dev/shm/fill bs=1M count=96 && \
                 dd if=/dev/zero of=/data bs=1M count=4 && sleep 1000",
            ],
        )
        .await;
    let burn = s.run("burn", &["sh", "-c", "while :; do :; done"]).await;

    let st = until(
        "the memory container's working set",
        || container_stats(&s, &mem),
        |c| working_set(c) >= 96 * MIB,
    )
    .await;
    let ws = working_set(&st);
    assert!(ws < 96 * MIB + 48 * MIB, "working set {ws} for 96 MiB held");
    let m = st.memory.as_ref().unwrap();
    assert!(m.usage_bytes.as_ref().unwrap().value >= ws);
    assert!(m.timestamp > 0);
    assert!(m.available_bytes.is_none(), "no limit: no available bytes");
    let attrs = st.attributes.as_ref().unwrap();
    assert_eq!(
        (
            attrs.id.as_str(),
            attrs.metadata.as_ref().unwrap().name.as_str()
        ),
        (mem.as_str(), "mem")
    );
    // What the cgroup files say (read after the sample: the tmpfs pages
    // stay, so the two agree within what sh and sleep add).
    let usage = read_u64(cgroup_dir(&s, "memory", &pod, &mem).join("memory.usage_in_bytes"));
    assert!(
        usage.abs_diff(m.usage_bytes.as_ref().unwrap().value) < 16 * MIB,
        "sample {:?} vs cgroup {usage}",
        m.usage_bytes
    );

    // The writable layer: 4 MiB and at least the file's inode.
    let st = until(
        "the writable layer",
        || container_stats(&s, &mem),
        |c| {
            c.writable_layer
                .as_ref()
                .and_then(|w| w.used_bytes.as_ref())
                .is_some_and(|b| b.value >= 4 * MIB)
        },
    )
    .await;
    let w = st.writable_layer.unwrap();
    assert!(w.used_bytes.unwrap().value < 8 * MIB);
    assert!(w.inodes_used.unwrap().value >= 1);
    assert!(w.timestamp > 0);
    assert!(w.fs_id.unwrap().mountpoint.ends_with("/containers"));

    // The busy loop: a rate from two samples, below the machine's CPUs.
    let st = until(
        "the busy container's CPU rate",
        || container_stats(&s, &burn),
        |c| nano_cores(c) > 200_000_000,
    )
    .await;
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    assert!(nano_cores(&st) <= cpus * 1_050_000_000, "{st:?}");
    let cpu = st.cpu.unwrap();
    let cgroup_ns = read_u64(cgroup_dir(&s, "cpuacct", &pod, &burn).join("cpuacct.usage"));
    assert!(
        cpu.usage_core_nano_seconds.unwrap().value <= cgroup_ns,
        "a sample is never ahead of the cgroup"
    );

    // The pod: its cgroup holds both containers' memory and processes.
    let p = until(
        "the pod's stats",
        || pod_stats(&s, &pod),
        |p| {
            p.linux
                .as_ref()
                .and_then(|l| l.memory.as_ref())
                .and_then(|m| m.working_set_bytes.as_ref())
                .is_some_and(|v| v.value >= 96 * MIB)
        },
    )
    .await;
    let l = p.linux.unwrap();
    assert_eq!(l.containers.len(), 2, "{:?}", l.containers);
    let procs = l.process.unwrap().process_count.unwrap().value;
    assert!((2..50).contains(&procs), "{procs} processes");
    assert!(l.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);
    assert_eq!(p.attributes.unwrap().metadata.unwrap().name, "pod");

    // Lists and their filters.
    let rt = s.c.runtime.clone();
    let list = |f: ContainerStatsFilter| {
        let mut rt = rt.clone();
        async move {
            rt.list_container_stats(ListContainerStatsRequest { filter: Some(f) })
                .await
                .unwrap()
                .into_inner()
                .stats
        }
    };
    assert_eq!(list(ContainerStatsFilter::default()).await.len(), 2);
    let only = list(ContainerStatsFilter {
        id: burn[..12].into(),
        ..Default::default()
    })
    .await;
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].attributes.as_ref().unwrap().id, burn);
    assert_eq!(
        list(ContainerStatsFilter {
            pod_sandbox_id: "0000".into(),
            ..Default::default()
        })
        .await
        .len(),
        0
    );

    // An exited container: its cgroup is gone, its layer is not. Its stats
    // say what is left, without an error; lists leave it out.
    s.stop(&burn, 0).await;
    let st = container_stats(&s, &burn).await;
    assert!(st.cpu.is_none() && st.memory.is_none(), "{st:?}");
    assert!(st.writable_layer.is_some());
    assert_eq!(list(ContainerStatsFilter::default()).await.len(), 1);
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_between_two_pods_show_in_both_pods_stats() {
    if !root_or_skip("bytes_between_two_pods_show_in_both_pods_stats") {
        return;
    }
    let mut s = scene("stats-net").await;
    let (other, ip) = second_pod(&mut s, "listener").await;
    // The listener's stdin never ends (busybox nc closes the connection
    // when its stdin does); it exits once the sender closes.
    let cfg = s.config(
        "sink",
        &["sh", "-c", "sleep 1000 | nc -l -p 8080 >/dev/null"],
    );
    let sink = s.create_in(&other, cfg).await.unwrap();
    s.start(&sink).await;
    // 4 MiB from the first pod to the second (nc may need the listener to
    // be up: retry until it is).
    let script = format!(
        "for i in $(seq 50); do dd if=/dev/zero bs=1k count=4096 2>/dev/null | nc {ip} 8080 && exit 0; sleep 0.2; done; exit 1"
    );
    let send = s.run("send", &["sh", "-c", &script]).await;
    let st = s.wait_exited(&send, Duration::from_secs(60)).await;
    assert_eq!(st.exit_code, 0, "{st:?}");

    let eth0 = |p: &PodSandboxStats, rx: bool| {
        p.linux
            .as_ref()
            .and_then(|l| l.network.as_ref())
            .and_then(|n| n.default_interface.as_ref())
            .and_then(|i| if rx { i.rx_bytes } else { i.tx_bytes })
            .map_or(0, |v| v.value)
    };
    let sender = until(
        "the sending pod's transmitted bytes",
        || pod_stats(&s, &s.pod),
        |p| eth0(p, false) >= 4 * MIB,
    )
    .await;
    let net = sender.linux.unwrap().network.unwrap();
    assert!(net.timestamp > 0);
    assert!(net.interfaces.iter().all(|i| i.name != "lo"), "{net:?}");
    assert_eq!(net.default_interface.unwrap().name, "eth0");
    until(
        "the listening pod's received bytes",
        || pod_stats(&s, &other),
        |p| eth0(p, true) >= 4 * MIB,
    )
    .await;

    // ListPodSandboxStats: both ready pods, then only the one left.
    let rt = s.c.runtime.clone();
    let list = || {
        let mut rt = rt.clone();
        async move {
            rt.list_pod_sandbox_stats(ListPodSandboxStatsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .stats
        }
    };
    assert_eq!(list().await.len(), 2);
    s.c.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: other.clone(),
        })
        .await
        .unwrap();
    let left = list().await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].attributes.as_ref().unwrap().id, s.pod);
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_of_unknown_objects_are_not_found() {
    if !root_or_skip("stats_of_unknown_objects_are_not_found") {
        return;
    }
    let d = berth_e2e::daemon::Berthd::start("stats-unknown");
    let mut c = d.client().await;
    let e = c
        .runtime
        .container_stats(ContainerStatsRequest {
            container_id: "feedbeef".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = c
        .runtime
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: "feedbeef".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // Empty lists, not errors, on an empty node.
    let l = c
        .runtime
        .list_container_stats(ListContainerStatsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(l.stats.is_empty());
    let l = c
        .runtime
        .list_pod_sandbox_stats(ListPodSandboxStatsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(l.stats.is_empty());
}

/// The value of `name` whose label values include `labels` (key, value)
/// pairs, given the descriptors' keys.
fn metric(
    keys: &std::collections::HashMap<String, Vec<String>>,
    ms: &[Metric],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<u64> {
    let k = keys.get(name)?;
    ms.iter()
        .filter(|m| m.name == name)
        .find(|m| {
            labels.iter().all(|(key, v)| {
                k.iter()
                    .position(|x| x == key)
                    .is_some_and(|i| m.label_values[i] == *v)
            })
        })
        .and_then(|m| m.value.as_ref().map(|v| v.value))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_sandbox_metrics_carry_cadvisor_names_and_labels() {
    if !root_or_skip("pod_sandbox_metrics_carry_cadvisor_names_and_labels") {
        return;
    }
    let mut s = scene("stats-cadvisor").await;
    let mem = s
        .run(
            "mem",
            &[
                "sh",
                "-c",
                "dd if=/dev/zero of=/dev/shm/fill bs=1M count=64 && sleep 1000",
            ],
        )
        .await;
    let descriptors =
        s.c.runtime
            .list_metric_descriptors(ListMetricDescriptorsRequest {})
            .await
            .unwrap()
            .into_inner()
            .descriptors;
    let keys: std::collections::HashMap<String, Vec<String>> = descriptors
        .iter()
        .map(|d| (d.name.clone(), d.label_keys.clone()))
        .collect();
    for name in [
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_memory_rss",
        "container_network_receive_bytes_total",
        "container_network_transmit_bytes_total",
        "container_fs_usage_bytes",
        "container_oom_events_total",
    ] {
        let k = keys
            .get(name)
            .unwrap_or_else(|| panic!("no descriptor {name}"));
        assert_eq!(
            k[..6],
            ["container", "id", "image", "name", "namespace", "pod"]
        );
    }

    let runtime = s.c.runtime.clone();
    let list = || {
        let mut rt = runtime.clone();
        async move {
            rt.list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
                .await
                .unwrap()
                .into_inner()
                .pod_metrics
        }
    };
    let who = [("container", "mem"), ("namespace", "e2e"), ("pod", "pod")];
    let pods = until(
        "the container's working set",
        list,
        |pods: &Vec<PodSandboxMetrics>| {
            pods.iter().flat_map(|p| &p.container_metrics).any(|c| {
                metric(
                    &keys,
                    &c.metrics,
                    "container_memory_working_set_bytes",
                    &who,
                )
                .is_some_and(|v| v >= 64 * MIB)
            })
        },
    )
    .await;
    assert_eq!(pods.len(), 1);
    let p = &pods[0];
    assert_eq!(p.pod_sandbox_id, s.pod);
    assert_eq!(p.container_metrics.len(), 1);
    let c = &p.container_metrics[0];
    assert_eq!(c.container_id, mem);
    // Every metric's values match its descriptor's keys.
    for m in p.metrics.iter().chain(&c.metrics) {
        let k = &keys[&m.name];
        assert_eq!(m.label_values.len(), k.len(), "{m:?}");
        assert!(m.timestamp > 0, "{m:?}");
    }
    let image = s.image.clone();
    assert!(
        metric(
            &keys,
            &c.metrics,
            "container_memory_rss",
            &[("image", &image), ("name", &mem)]
        )
        .is_some()
    );
    assert!(metric(&keys, &c.metrics, "container_processes", &who).unwrap() >= 1);
    // The pod: its cgroup as container="", its network as container="POD".
    let pod_ws = metric(
        &keys,
        &p.metrics,
        "container_memory_working_set_bytes",
        &[("container", ""), ("pod", "pod")],
    )
    .unwrap();
    assert!(pod_ws >= 64 * MIB, "{pod_ws}");
    assert!(
        metric(
            &keys,
            &p.metrics,
            "container_network_receive_bytes_total",
            &[("container", "POD"), ("interface", "eth0")]
        )
        .is_some(),
        "{:?}",
        p.metrics
    );
    s.stop(&mem, 0).await;
    s.remove(&mem).await;
    let after = list().await;
    assert!(after[0].container_metrics.is_empty(), "{after:?}");
    s.finish().await;
}
