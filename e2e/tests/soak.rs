//! Crash anywhere: workers run pod and container lifecycles concurrently
//! (RunPodSandbox with and without a shared PID namespace, Create, Start,
//! ExecSync, Stop, Remove, StopPodSandbox, RemovePodSandbox) while berthd
//! is killed with SIGKILL at random moments and started again. At the end
//! every pod is removed through the CRI, berthd stops cleanly, and nothing
//! may be left: mounts, pinned namespaces, veths on the bridge, IP
//! reservations, cgroups in any hierarchy, processes (shims, PID-namespace
//! holders, containers), state directories, container or pod directories,
//! or store records (sandboxes, containers, removals, image leases) without
//! their objects.
//!
//! CI runs a short form (`BERTH_SOAK_KILLS`, default 4 kills);
//! `scripts/soak [kills]` runs a long one and prints the report.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use berth_cli::client::{self, CriClient};
use berth_e2e::fixture::{self, Registry};
use berth_e2e::netns::bridge_ports;
use berth_e2e::podnet::{self, Plugins, env_built};
use berth_e2e::root_or_skip;
use k8s_cri::v1::*;

/// A small, seeded generator: the seed is printed, so a run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default)]
struct Counts {
    cycles: AtomicU64,
    failed_calls: AtomicU64,
    /// Every pod id RunPodSandbox answered (to find holders left behind).
    pods: std::sync::Mutex<Vec<String>>,
}

/// One worker: lifecycles until `stop`, any call allowed to fail (berthd
/// may be down, or killed in the middle of it).
async fn worker(
    n: u64,
    socket: PathBuf,
    image: String,
    logs: PathBuf,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((n + 1) * 0x1234_5678));
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let Ok(mut c) = client::connect(&socket, Duration::from_secs(1)).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let ok = cycle(
            &mut c,
            &format!("w{n}-{i}"),
            &image,
            &logs,
            rng.below(2) == 0,
            &counts,
        )
        .await;
        counts
            .failed_calls
            .fetch_add(u64::from(!ok), Ordering::Relaxed);
        if ok {
            counts.cycles.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One pod + container lifecycle; false at the first failed call (what it
/// made is left for the crash recovery and the final cleanup).
async fn cycle(
    c: &mut CriClient,
    name: &str,
    image: &str,
    logs: &Path,
    shared_pid: bool,
    counts: &Counts,
) -> bool {
    let mut cfg = podnet::pod_config(name);
    cfg.log_directory = logs.display().to_string();
    if shared_pid {
        cfg.linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .namespace_options
            .as_mut()
            .unwrap()
            .pid = NamespaceMode::Pod as i32;
    }
    let Ok(pod) = c
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
    else {
        return false;
    };
    let pod = pod.into_inner().pod_sandbox_id;
    counts.pods.lock().unwrap().push(pod.clone());
    let Ok(ctr) = c
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(podnet::container_config(name, image, &["sleep", "1000"])),
            sandbox_config: Some(cfg),
        })
        .await
    else {
        return false;
    };
    let id = ctr.into_inner().container_id;
    let calls = [
        c.runtime
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .is_ok(),
        c.runtime
            .exec_sync(ExecSyncRequest {
                container_id: id.clone(),
                cmd: vec!["true".into()],
                timeout: 10,
            })
            .await
            .is_ok(),
        c.runtime
            .stop_container(StopContainerRequest {
                container_id: id.clone(),
                timeout: 0,
            })
            .await
            .is_ok(),
        c.runtime
            .remove_container(RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await
            .is_ok(),
        c.runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .is_ok(),
        c.runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            })
            .await
            .is_ok(),
    ];
    calls.iter().all(|ok| *ok)
}

/// Every file and directory under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// Processes whose command line mentions `needle`.
fn processes_naming(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(needle)
                .then(|| format!("{}: {cmd}", e.file_name().to_string_lossy()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_anywhere_leaves_nothing_behind() {
    if !root_or_skip("crash_anywhere_leaves_nothing_behind") {
        return;
    }
    let kills: u64 = std::env::var("BERTH_SOAK_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let workers: u64 = std::env::var("BERTH_SOAK_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let seed = std::env::var("BERTH_SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| (u64::from(std::process::id()) * 2_654_435_761) | 1);
    eprintln!("soak: {kills} kills, {workers} workers, seed {seed}");
    let reg = Registry::start(None);
    reg.push(&fixture::busybox(), "busybox", "v1").await;
    let mut e = env_built("soak", Plugins::Berth, None, |b| b);
    let image = reg.reference("busybox", "v1");
    let mut c = e.d.client().await;
    c.image
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let logs = e.d.dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let tasks: Vec<_> = (0..workers)
        .map(|n| {
            tokio::spawn(worker(
                n,
                e.d.socket.clone(),
                image.clone(),
                logs.clone(),
                stop.clone(),
                counts.clone(),
            ))
        })
        .collect();
    let mut rng = Rng(seed);
    for k in 0..kills {
        tokio::time::sleep(Duration::from_millis(100 + rng.below(1400))).await;
        e.d.kill9();
        eprintln!(
            "soak: kill {} after {} cycles",
            k + 1,
            counts.cycles.load(Ordering::Relaxed)
        );
        // Sometimes down for a while, as under systemd's restart delay.
        tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
        e.d.spawn_and_wait_ready();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let cycles = counts.cycles.load(Ordering::Relaxed);
    let failed = counts.failed_calls.load(Ordering::Relaxed);
    eprintln!("soak: {cycles} whole cycles, {failed} cut short, {kills} kills");

    // Everything that survived goes through the CRI, as kubelet would.
    let mut c = e.d.client().await;
    let pods = c
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    for p in &pods {
        c.runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await
            .unwrap_or_else(|err| panic!("stop {}: {err:?}\n{}", p.id, e.d.log()));
        c.runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await
            .unwrap_or_else(|err| panic!("remove {}: {err:?}\n{}", p.id, e.d.log()));
    }
    let left = c
        .runtime
        .list_containers(ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(left.is_empty(), "containers left: {left:?}");
    let mut problems = Vec::new();
    let ports = bridge_ports(&e.net.lease.bridge);
    if !ports.is_empty() {
        problems.push(format!("veths left on the bridge: {ports:?}"));
    }
    let reserved: Vec<_> = walk(&e.net.ipam)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&e.net.lease.prefix))
        })
        .collect();
    if !reserved.is_empty() {
        problems.push(format!("IPs still reserved: {reserved:?}"));
    }
    for dir in [
        e.d.root_dir.join("containers"),
        e.d.root_dir.join("pods"),
        e.d.state_dir.join("netns"),
        e.d.state_dir.join("pods"),
        e.d.state_dir.join("shims"),
    ] {
        let entries = walk(&dir);
        if !entries.is_empty() {
            problems.push(format!("left in {}: {entries:?}", dir.display()));
        }
    }
    if let Some(parent) = &e.d.cgroup_parent {
        for h in berth_e2e::env::cgroup_hierarchies() {
            let dir = h.join(parent.trim_start_matches('/'));
            let sub: Vec<_> = walk(&dir).into_iter().filter(|p| p.is_dir()).collect();
            if !sub.is_empty() {
                problems.push(format!("cgroups left in {}: {sub:?}", h.display()));
            }
        }
    }

    // PID-namespace holders are named by their pod's id.
    let made = counts.pods.lock().unwrap().clone();
    let holders: Vec<_> = processes_naming(" pause ")
        .into_iter()
        .filter(|p| made.iter().any(|id| p.contains(id.as_str())))
        .collect();
    if !holders.is_empty() {
        problems.push(format!("PID-namespace holders left: {holders:?}"));
    }
    drop(c);
    assert!(e.d.stop().success(), "{}", e.d.log());
    // berthd is gone: anything still naming its dirs (shims, runtimes,
    // containers started from its bundles) was left behind.
    let dir = e.d.dir.display().to_string();
    let procs = processes_naming(&dir);
    if !procs.is_empty() {
        problems.push(format!("processes of this daemon left: {procs:?}"));
    }
    let store = berth_store::Store::open(&e.d.root_dir.join("meta.redb")).unwrap();
    type Any = berth_store::Table<serde_json::Value>;
    const TABLES: [Any; 6] = [
        Any::new("pods"),
        Any::new("pod_names"),
        Any::new("containers"),
        Any::new("container_names"),
        Any::new("container_removals"),
        Any::new("image_leases"),
    ];
    for t in &TABLES {
        let keys: Vec<String> = store.list(t).unwrap().into_iter().map(|(k, _)| k).collect();
        if !keys.is_empty() {
            problems.push(format!("records left in {}: {keys:?}", t.name()));
        }
    }
    assert!(
        problems.is_empty(),
        "after {cycles} cycles and {kills} kills (seed {seed}):\n  {}\nlog:\n{}",
        problems.join("\n  "),
        e.d.log()
    );
}
