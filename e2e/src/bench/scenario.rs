//! Scenarios: named, repeatable pieces of CRI work, each measured per step.
//! A scenario is added here when the capability it exercises lands.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_cli::client::CriClient;
use k8s_cri::v1::{StatusRequest, VersionRequest};
use serde::Serialize;
use tokio::sync::Mutex;

use super::stats::Summary;
use super::target::Target;

/// Images the pull scenarios use, in a registry both runtimes reach.
#[derive(Debug)]
pub struct Fixtures {
    pub registry: crate::fixture::Registry,
    pub busybox: String,
    /// The large image and its compressed size, if a scenario needs it.
    pub large: Option<(String, u64)>,
}

impl Fixtures {
    /// Starts a registry on 127.0.0.1 and pushes the images needed.
    pub async fn start(large: bool) -> Fixtures {
        let registry = crate::fixture::Registry::start(None);
        let busybox = crate::fixture::busybox();
        registry.push(&busybox, "bench/busybox", "1").await;
        let large = if large {
            let img = tokio::task::spawn_blocking(crate::fixture::large_debian)
                .await
                .expect("building the large image");
            registry.push(&img, "bench/debian", "1").await;
            Some((registry.reference("bench/debian", "1"), img.layers_size()))
        } else {
            None
        };
        Fixtures {
            busybox: registry.reference("bench/busybox", "1"),
            registry,
            large,
        }
    }
}

/// Every scenario the harness knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// The Version RPC: the floor of a CRI round trip.
    Version,
    /// Status (not verbose), as kubelet polls it every few seconds.
    Status,
    /// The runtime's memory with no pods: daemon RSS and PSS.
    IdleMemory,
    /// PullImage of the small busybox image (3 layers, ~1 MB) when it is
    /// not present: removed before each iteration (not timed).
    PullCold,
    /// PullImage of the busybox image when it is already present.
    PullWarm,
    /// PullImage of the ~200 MB, 6-layer Debian image, not present: seconds
    /// and MB/s (compressed bytes over time).
    PullLargeCold,
    /// RunPodSandbox with network (bridge + host-local + portmap), then
    /// StopPodSandbox and RemovePodSandbox, each timed.
    PodLifecycle,
    /// In one running pod: Create, Start, Stop (a shell that exits on
    /// SIGTERM, timeout 10 s), Remove, each timed; and "stop-ignoring":
    /// StopContainer (timeout 1 s) of a shell that ignores SIGTERM.
    ContainerLifecycle,
    /// RunPodSandbox, Create/Start/Stop/RemoveContainer, StopPodSandbox,
    /// RemovePodSandbox: from nothing to removed, each step and the total.
    FullCycle,
    /// RunPodSandbox, CreateContainer and StartContainer of a pod in a
    /// user namespace of its own (hostUsers: false; idmapped layers)
    /// beside the same for a plain pod, each timed (on containerd 1.6,
    /// which has no user namespaces for pods, the plain pod only).
    UsernsStart,
    /// ExecSync of `true` and of `echo hello` in a running container.
    ExecSync,
    /// Exec of `true` (non-TTY, stdout and stderr) through the streaming
    /// server, the whole path: the Exec call, connect, upgrade, streams,
    /// exit status; over SPDY and over WebSocket (on runtimes whose
    /// WebSocket side serves exec).
    ExecStream,
    /// From the Attach call to the first byte (over SPDY) of a container
    /// that prints a line every 10 ms.
    AttachFirstByte,
    /// Port-forward over SPDY to busybox httpd in the pod, the session
    /// established: a new connection to the first byte of an HTTP
    /// response, and MB/s downloading 100 MiB through one connection.
    PortForward,
    /// The pod's shim RSS with one idle container, and while one attach
    /// (SPDY) to it is open and idle.
    AttachMemory,
    /// ListPodSandbox and ListContainers with 100 pods, one running
    /// container each (set up and torn down, not timed).
    #[value(name = "list-100")]
    #[serde(rename = "list-100")]
    List100,
    /// The same with 250 pods.
    #[value(name = "list-250")]
    #[serde(rename = "list-250")]
    List250,
    /// With 100 pods, one running container each: ListContainerStats and
    /// ListPodSandboxStats (and, on berth, a /metrics scrape: latency and
    /// size), then the daemon's CPU over a window of kubelet-like polling
    /// (stats every 10 s, a scrape every 15 s) and its RSS growth from
    /// serving stats.
    #[value(name = "stats-100")]
    #[serde(rename = "stats-100")]
    Stats100,
    /// The same with 250 pods.
    #[value(name = "stats-250")]
    #[serde(rename = "stats-250")]
    Stats250,
    /// Starts 20 pods with one container each (10 at a time): wall time, and
    /// the runtime's memory (daemon + per-pod shims, RSS and PSS).
    #[value(name = "density-20")]
    #[serde(rename = "density-20")]
    Density20,
    /// The same with 100 pods.
    #[value(name = "density-100")]
    #[serde(rename = "density-100")]
    Density100,
    /// The same with 250 pods.
    #[value(name = "density-250")]
    #[serde(rename = "density-250")]
    Density250,
}

impl Scenario {
    pub const ALL: &'static [Scenario] = &[
        Scenario::Version,
        Scenario::Status,
        Scenario::IdleMemory,
        Scenario::PullCold,
        Scenario::PullWarm,
        Scenario::PullLargeCold,
        Scenario::PodLifecycle,
        Scenario::ContainerLifecycle,
        Scenario::FullCycle,
        Scenario::UsernsStart,
        Scenario::ExecSync,
        Scenario::ExecStream,
        Scenario::AttachFirstByte,
        Scenario::PortForward,
        Scenario::AttachMemory,
        Scenario::List100,
        Scenario::List250,
        Scenario::Stats100,
        Scenario::Stats250,
        Scenario::Density20,
        Scenario::Density100,
        Scenario::Density250,
    ];

    /// Scenarios that need the image registry fixture.
    pub fn needs_registry(self) -> bool {
        !matches!(
            self,
            Scenario::Version | Scenario::Status | Scenario::IdleMemory | Scenario::PodLifecycle
        )
    }

    /// Pods the scenario sets up at once, for those that scale with pods.
    pub fn pods(self) -> Option<usize> {
        match self {
            Scenario::List100 | Scenario::Stats100 | Scenario::Density100 => Some(100),
            Scenario::List250 | Scenario::Stats250 | Scenario::Density250 => Some(250),
            Scenario::Density20 => Some(20),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Version => "version",
            Scenario::Status => "status",
            Scenario::IdleMemory => "idle-memory",
            Scenario::PullCold => "pull-cold",
            Scenario::PullWarm => "pull-warm",
            Scenario::PullLargeCold => "pull-large-cold",
            Scenario::PodLifecycle => "pod-lifecycle",
            Scenario::ContainerLifecycle => "container-lifecycle",
            Scenario::FullCycle => "full-cycle",
            Scenario::UsernsStart => "userns-start",
            Scenario::ExecSync => "exec-sync",
            Scenario::ExecStream => "exec-stream",
            Scenario::AttachFirstByte => "attach-first-byte",
            Scenario::PortForward => "port-forward",
            Scenario::AttachMemory => "attach-memory",
            Scenario::List100 => "list-100",
            Scenario::List250 => "list-250",
            Scenario::Stats100 => "stats-100",
            Scenario::Stats250 => "stats-250",
            Scenario::Density20 => "density-20",
            Scenario::Density100 => "density-100",
            Scenario::Density250 => "density-250",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RunOpts {
    pub iterations: usize,
    pub concurrency: usize,
    /// Overrides the pod count of the list and density scenarios (the
    /// smoke test runs them with a few pods).
    pub pods: Option<usize>,
    /// How long the stats scenarios poll like kubelet while the daemon's
    /// CPU is measured.
    pub poll: Duration,
}

/// The samples of one step, in `unit` (ms for latencies, MiB for memory).
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub step: String,
    pub unit: &'static str,
    pub samples: Vec<f64>,
}

impl StepResult {
    pub fn summary(&self) -> Option<Summary> {
        Summary::of(&self.samples)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: &'static str,
    pub iterations: usize,
    pub concurrency: usize,
    pub steps: Vec<StepResult>,
}

impl ScenarioResult {
    /// Adds another run's samples (same scenario) to this one.
    pub fn merge(&mut self, other: ScenarioResult) {
        for s in other.steps {
            match self.steps.iter_mut().find(|t| t.step == s.step) {
                Some(t) => t.samples.extend(s.samples),
                None => self.steps.push(s),
            }
        }
        self.iterations += other.iterations;
    }
}

/// The label on every pod the harness makes, so teardown finds them all.
pub const POD_LABEL: &str = "berth-bench";

/// A pod as kubelet would send it for a plain Deployment replica.
pub(super) fn bench_pod(name: &str, cgroup_parent: &str) -> k8s_cri::v1::PodSandboxConfig {
    use k8s_cri::v1::*;
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_owned(),
            uid: format!("uid-{name}"),
            namespace: "bench".into(),
            attempt: 0,
        }),
        labels: [(POD_LABEL.to_owned(), "1".to_owned())].into(),
        hostname: "bench".into(),
        dns_config: Some(DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["bench.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.to_owned(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    pid: NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Busy and total jiffies over all CPUs, from /proc/stat.
fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    // idle + iowait
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Waits (up to 10 s) until the machine is idle: work a runtime deferred
/// (containerd deletes snapshots in the background after RemoveImage) must
/// not land in the next measurement, of either runtime.
pub async fn settle() {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (b0, t0) = cpu_jiffies();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (b1, t1) = cpu_jiffies();
        let busy = (b1 - b0) as f64 / (t1 - t0).max(1) as f64;
        if busy < 0.05 || Instant::now() > deadline {
            return;
        }
    }
}

pub(super) async fn pull(c: &mut CriClient, image: &str) -> Result<(), String> {
    c.image
        .pull_image(k8s_cri::v1::PullImageRequest {
            image: Some(k8s_cri::v1::ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("PullImage {image}: {e}"))
}

async fn remove(c: &mut CriClient, image: &str) -> Result<(), String> {
    c.image
        .remove_image(k8s_cri::v1::RemoveImageRequest {
            image: Some(k8s_cri::v1::ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("RemoveImage {image}: {e}"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Collects (step, duration) samples from concurrent workers.
#[derive(Debug, Default)]
pub(super) struct Recorder {
    steps: Mutex<Vec<StepResult>>,
}

impl Recorder {
    pub(super) async fn record(&self, step: &str, d: Duration) {
        let mut steps = self.steps.lock().await;
        match steps.iter_mut().find(|s| s.step == step) {
            Some(s) => s.samples.push(ms(d)),
            None => steps.push(StepResult {
                step: step.to_owned(),
                unit: "ms",
                samples: vec![ms(d)],
            }),
        }
    }
}

/// Times one call.
pub async fn timed<T, E: std::fmt::Debug>(
    fut: impl Future<Output = Result<T, E>>,
) -> Result<(T, Duration), String> {
    let start = Instant::now();
    let out = fut.await.map_err(|e| format!("{e:?}"))?;
    Ok((out, start.elapsed()))
}

/// Runs `iteration` `opts.iterations` times on `opts.concurrency` workers.
/// After a failure no new iteration starts; the first error is returned
/// once every worker has finished (so teardown never races a worker).
pub(super) async fn run_iterations<F, Fut>(
    client: &CriClient,
    opts: RunOpts,
    iteration: F,
) -> Result<Vec<StepResult>, String>
where
    F: Fn(CriClient, usize, Arc<Recorder>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let rec = Arc::new(Recorder::default());
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let iteration = Arc::new(iteration);
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency.max(1) {
        let (client, rec, next, failed, iteration) = (
            client.clone(),
            rec.clone(),
            next.clone(),
            failed.clone(),
            iteration.clone(),
        );
        let n = opts.iterations;
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || failed.load(Ordering::Relaxed) {
                    return Ok::<(), String>(());
                }
                if let Err(e) = iteration(client.clone(), i, rec.clone()).await {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }));
    }
    let mut first_error = None;
    for w in workers {
        let r = w.await.map_err(|e| e.to_string()).and_then(|r| r);
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let steps = std::mem::take(&mut *rec.steps.lock().await);
    Ok(steps)
}

impl Scenario {
    /// Runs the scenario once (with its iterations) against `target`.
    pub async fn run(
        self,
        target: &Target,
        client: &CriClient,
        opts: RunOpts,
        fixtures: Option<&Fixtures>,
    ) -> Result<ScenarioResult, String> {
        let fixtures =
            || fixtures.ok_or_else(|| format!("{} needs the registry fixture", self.name()));
        settle().await;
        // Warm the connection: the first call pays for HTTP/2 setup.
        client
            .runtime
            .clone()
            .version(VersionRequest::default())
            .await
            .map_err(|e| format!("warm-up Version: {e}"))?;
        let steps = match self {
            Scenario::Version => {
                run_iterations(client, opts, |mut c, _, rec| async move {
                    let (_, d) = timed(c.runtime.version(VersionRequest::default())).await?;
                    rec.record("Version", d).await;
                    Ok(())
                })
                .await?
            }
            Scenario::Status => {
                run_iterations(client, opts, |mut c, _, rec| async move {
                    let (_, d) = timed(c.runtime.status(StatusRequest { verbose: false })).await?;
                    rec.record("Status", d).await;
                    Ok(())
                })
                .await?
            }
            Scenario::PullCold | Scenario::PullWarm => {
                let image = fixtures()?.busybox.clone();
                let cold = self == Scenario::PullCold;
                // The same image cannot be removed and pulled concurrently.
                let opts = RunOpts {
                    concurrency: 1,
                    ..opts
                };
                if !cold {
                    pull(&mut client.clone(), &image).await?;
                }
                run_iterations(client, opts, move |mut c, _, rec| {
                    let image = image.clone();
                    async move {
                        if cold {
                            remove(&mut c, &image).await?;
                            settle().await;
                        }
                        let start = Instant::now();
                        pull(&mut c, &image).await?;
                        rec.record("PullImage", start.elapsed()).await;
                        Ok(())
                    }
                })
                .await?
            }
            Scenario::PullLargeCold => {
                let (image, bytes) = fixtures()?.large.clone().ok_or("large image not built")?;
                let mut c = client.clone();
                let mut seconds = Vec::new();
                let mut rates = Vec::new();
                // Each iteration moves ~100 MB: a few are enough.
                for _ in 0..opts.iterations.min(5) {
                    remove(&mut c, &image).await?;
                    settle().await;
                    let start = Instant::now();
                    pull(&mut c, &image).await?;
                    let t = start.elapsed().as_secs_f64();
                    seconds.push(t);
                    rates.push(bytes as f64 / 1e6 / t);
                }
                remove(&mut c, &image).await?;
                vec![
                    StepResult {
                        step: "PullImage".into(),
                        unit: "s",
                        samples: seconds,
                    },
                    StepResult {
                        step: "throughput".into(),
                        unit: "MB/s",
                        samples: rates,
                    },
                ]
            }
            Scenario::PodLifecycle => {
                let parent = target.cgroup_parent().to_owned();
                let handler = target.runtime_handler().to_owned();
                let nonce = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default();
                run_iterations(client, opts, move |mut c, i, rec| {
                    let parent = parent.clone();
                    let handler = handler.clone();
                    async move {
                        let config = bench_pod(&format!("bench-{nonce}-{i}"), &parent);
                        let start = Instant::now();
                        let id = c
                            .runtime
                            .run_pod_sandbox(k8s_cri::v1::RunPodSandboxRequest {
                                config: Some(config),
                                runtime_handler: handler,
                            })
                            .await
                            .map_err(|e| format!("RunPodSandbox: {e}"))?
                            .into_inner()
                            .pod_sandbox_id;
                        rec.record("RunPodSandbox", start.elapsed()).await;
                        let start = Instant::now();
                        c.runtime
                            .stop_pod_sandbox(k8s_cri::v1::StopPodSandboxRequest {
                                pod_sandbox_id: id.clone(),
                            })
                            .await
                            .map_err(|e| format!("StopPodSandbox: {e}"))?;
                        rec.record("StopPodSandbox", start.elapsed()).await;
                        let start = Instant::now();
                        c.runtime
                            .remove_pod_sandbox(k8s_cri::v1::RemovePodSandboxRequest {
                                pod_sandbox_id: id,
                            })
                            .await
                            .map_err(|e| format!("RemovePodSandbox: {e}"))?;
                        rec.record("RemovePodSandbox", start.elapsed()).await;
                        Ok(())
                    }
                })
                .await?
            }
            Scenario::ContainerLifecycle
            | Scenario::FullCycle
            | Scenario::UsernsStart
            | Scenario::ExecSync
            | Scenario::ExecStream
            | Scenario::AttachFirstByte
            | Scenario::PortForward
            | Scenario::AttachMemory
            | Scenario::List100
            | Scenario::List250
            | Scenario::Stats100
            | Scenario::Stats250
            | Scenario::Density20
            | Scenario::Density100
            | Scenario::Density250 => {
                super::containers::run(self, target, client, opts, &fixtures()?.busybox).await?
            }
            Scenario::IdleMemory => {
                // Let start-up allocations settle before reading.
                tokio::time::sleep(Duration::from_secs(1)).await;
                let m = target
                    .memory()
                    .ok_or("memory is only measured for runtimes the harness started")?;
                let mib = |kib: u64| kib as f64 / 1024.0;
                vec![
                    StepResult {
                        step: "daemon RSS".into(),
                        unit: "MiB",
                        samples: vec![mib(m.daemon.rss_kib)],
                    },
                    StepResult {
                        step: "daemon PSS".into(),
                        unit: "MiB",
                        samples: vec![mib(m.daemon.pss_kib)],
                    },
                    StepResult {
                        step: "daemon anon".into(),
                        unit: "MiB",
                        samples: vec![mib(m.daemon.anon_kib)],
                    },
                ]
            }
        };
        Ok(ScenarioResult {
            scenario: self.name(),
            iterations: opts.iterations,
            concurrency: opts.concurrency,
            steps,
        })
    }
}
