//! Container scenarios: lifecycle in a running pod, the full cycle from
//! nothing, ExecSync, List* over many pods, and density (start time and the
//! runtime's memory with N pods).
//!
//! Every pod a scenario makes carries the label [`POD_LABEL`] with this
//! run's id, and every scenario ends by stopping and removing all of them,
//! whether it succeeded or not.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_cli::client::CriClient;
use k8s_cri::v1::*;
use tokio::sync::Mutex;

use super::scenario::{
    POD_LABEL, Recorder, RunOpts, Scenario, StepResult, bench_pod, pull, run_iterations, settle,
};
use super::target::Target;

/// Pods set up (and torn down) this many at a time, as kubelet's workers
/// would start a burst of pods.
const SETUP_CONCURRENCY: usize = 10;

/// A shell that exits on SIGTERM. `sleep & wait` rather than a foreground
/// `sleep`: a shell runs its trap only once the foreground command is done,
/// which would add up to a second of the workload's own to every stop.
const EXITS_ON_TERM: &str = "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done";
/// A shell that ignores SIGTERM: only the kill after the timeout stops it.
const IGNORES_TERM: &str = "trap '' TERM; while :; do sleep 1; done";
/// `sleep` forever (the pods of exec, list and density).
const SLEEP: &[&str] = &["sleep", "2147483647"];

/// What the scenarios of one run share.
#[derive(Debug)]
pub(super) struct Ctx {
    /// This run's id: in pod names and in the value of [`POD_LABEL`].
    run: String,
    handler: String,
    cgroup_parent: String,
    log_root: PathBuf,
    image: String,
}

impl Ctx {
    fn new(target: &Target, image: &str) -> Ctx {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Ctx {
            run: format!("{:x}", nanos % (1 << 48)),
            handler: target.runtime_handler().to_owned(),
            cgroup_parent: target.cgroup_parent().to_owned(),
            log_root: target.log_root(),
            image: image.to_owned(),
        }
    }

    /// A pod config with its log directory made (kubelet makes it too).
    fn pod_config(&self, name: &str) -> Result<PodSandboxConfig, String> {
        let name = format!("{name}-{}", self.run);
        let mut config = bench_pod(&name, &self.cgroup_parent);
        config.labels.insert(POD_LABEL.into(), self.run.clone());
        let dir = self.log_root.join(&name);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        config.log_directory = dir.display().to_string();
        Ok(config)
    }

    pub(super) fn container(&self, name: &str, cmd: &[&str]) -> ContainerConfig {
        crate::podnet::container_config(name, &self.image, cmd)
    }

    /// `sh -c script`, its command line marked with `marker` (a comment)
    /// so [`wait_for_term_disposition`] finds the process.
    fn shell(&self, name: &str, script: &str, marker: &str) -> ContainerConfig {
        self.container(name, &["sh", "-c", &format!("{script} # {marker}")])
    }
}

/// A pod of this run: its id and config.
pub(super) struct Pod {
    pub(super) id: String,
    config: PodSandboxConfig,
}

pub(super) async fn run_pod(c: &mut CriClient, ctx: &Ctx, name: &str) -> Result<Pod, String> {
    run_pod_in(c, ctx, name, None).await
}

/// A pod, in a user namespace of its own when `userns` (mode POD) is set.
async fn run_pod_in(
    c: &mut CriClient,
    ctx: &Ctx,
    name: &str,
    userns: Option<&UserNamespace>,
) -> Result<Pod, String> {
    let mut config = ctx.pod_config(name)?;
    if let Some(u) = userns
        && let Some(ns) = config
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
            .and_then(|sc| sc.namespace_options.as_mut())
    {
        ns.userns_options = Some(u.clone());
    }
    let id = c
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: ctx.handler.clone(),
        })
        .await
        .map_err(|e| format!("RunPodSandbox: {e}"))?
        .into_inner()
        .pod_sandbox_id;
    Ok(Pod { id, config })
}

/// Mode POD with one range of 65536 ids from `base`, as kubelet maps.
fn user_namespace(base: u32) -> UserNamespace {
    let map = vec![IdMapping {
        host_id: base,
        container_id: 0,
        length: 65536,
    }];
    UserNamespace {
        mode: NamespaceMode::Pod as i32,
        uids: map.clone(),
        gids: map,
    }
}

pub(super) async fn create(
    c: &mut CriClient,
    pod: &Pod,
    config: ContainerConfig,
) -> Result<String, String> {
    c.runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.config.clone()),
        })
        .await
        .map(|r| r.into_inner().container_id)
        .map_err(|e| format!("CreateContainer: {e}"))
}

pub(super) async fn start(c: &mut CriClient, id: &str) -> Result<(), String> {
    c.runtime
        .start_container(StartContainerRequest {
            container_id: id.into(),
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("StartContainer: {e}"))
}

async fn stop(c: &mut CriClient, id: &str, timeout: i64) -> Result<(), String> {
    c.runtime
        .stop_container(StopContainerRequest {
            container_id: id.into(),
            timeout,
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("StopContainer: {e}"))
}

async fn remove_container(c: &mut CriClient, id: &str) -> Result<(), String> {
    c.runtime
        .remove_container(RemoveContainerRequest {
            container_id: id.into(),
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("RemoveContainer: {e}"))
}

async fn stop_pod(c: &mut CriClient, id: &str) -> Result<(), String> {
    c.runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("StopPodSandbox: {e}"))
}

async fn remove_pod(c: &mut CriClient, id: &str) -> Result<(), String> {
    c.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("RemovePodSandbox: {e}"))
}

/// Times `fut` and records it as `step`.
pub(super) async fn step<T>(
    rec: &Recorder,
    name: &str,
    fut: impl Future<Output = Result<T, String>>,
) -> Result<(T, Duration), String> {
    let start = Instant::now();
    let out = fut.await?;
    let d = start.elapsed();
    rec.record(name, d).await;
    Ok((out, d))
}

fn bit_set(status: &str, key: &str, signal: u32) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

/// Waits (not timed) until the shell marked `marker` has set up its
/// SIGTERM trap. Until then it is a PID namespace's init with the default
/// disposition, which the kernel does not deliver: a StopContainer sent
/// then would wait out its whole timeout, on any runtime.
async fn wait_for_term_disposition(marker: &str) -> Result<(), String> {
    const SIGTERM: u32 = 15;
    let suffix = format!("# {marker}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(entries) = fs::read_dir("/proc") {
            for e in entries.flatten() {
                let p = e.path();
                let Ok(cmdline) = fs::read(p.join("cmdline")) else {
                    continue;
                };
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                let is_sh = args.first().is_some_and(|a| a.ends_with(b"sh"));
                let marked = args.iter().any(|a| a.ends_with(suffix.as_bytes()));
                if !(is_sh && marked) {
                    continue;
                }
                let status = fs::read_to_string(p.join("status")).unwrap_or_default();
                if bit_set(&status, "SigCgt:", SIGTERM) || bit_set(&status, "SigIgn:", SIGTERM) {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!("container {marker}: no SIGTERM trap after 20 s"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The ids of this run's pods.
async fn our_pods(client: &CriClient, ctx: &Ctx) -> Result<Vec<String>, String> {
    let pods = client
        .runtime
        .clone()
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .map_err(|e| format!("ListPodSandbox: {e}"))?
        .into_inner()
        .items;
    Ok(pods
        .into_iter()
        .filter(|p| p.labels.get(POD_LABEL) == Some(&ctx.run))
        .map(|p| p.id)
        .collect())
}

/// Stops and removes `ids`, [`SETUP_CONCURRENCY`] at a time, going on past
/// errors; returns them.
async fn remove_pods(client: &CriClient, ids: Vec<String>) -> Vec<String> {
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..SETUP_CONCURRENCY {
        let (mut c, ids, next, errors) =
            (client.clone(), ids.clone(), next.clone(), errors.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { return };
                // RemovePodSandbox stops what still runs, but kubelet
                // stops first, and so does the harness.
                let stopped = stop_pod(&mut c, id).await;
                if let Err(e) = stopped.and(remove_pod(&mut c, id).await) {
                    errors.lock().await.push(format!("{id}: {e}"));
                }
            }
        }));
    }
    for w in workers {
        if let Err(e) = w.await {
            errors.lock().await.push(e.to_string());
        }
    }
    std::mem::take(&mut *errors.lock().await)
}

/// Removes every pod of this run and their log directories.
async fn teardown(client: &CriClient, ctx: &Ctx) -> Result<(), String> {
    let mut errors = Vec::new();
    for _ in 0..3 {
        match our_pods(client, ctx).await {
            Ok(ids) if ids.is_empty() => {
                let _ = fs::remove_dir_all(&ctx.log_root);
                return Ok(());
            }
            Ok(ids) => errors = remove_pods(client, ids).await,
            Err(e) => errors = vec![e],
        }
    }
    Err(format!("teardown left pods behind: {}", errors.join("; ")))
}

/// Starts `n` pods with one `sleep` container each, [`SETUP_CONCURRENCY`]
/// at a time.
pub(super) async fn start_pods(client: &CriClient, ctx: &Arc<Ctx>, n: usize) -> Result<(), String> {
    let opts = RunOpts {
        iterations: n,
        concurrency: SETUP_CONCURRENCY,
        pods: None,
        poll: Duration::ZERO,
    };
    let ctx = ctx.clone();
    run_iterations(client, opts, move |mut c, i, _| {
        let ctx = ctx.clone();
        async move {
            let pod = run_pod(&mut c, &ctx, &format!("p{i}")).await?;
            let id = create(&mut c, &pod, ctx.container("sleep", SLEEP)).await?;
            start(&mut c, &id).await
        }
    })
    .await
    .map(|_| ())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub(super) fn single(step: &str, unit: &'static str, value: f64) -> StepResult {
    StepResult {
        step: step.into(),
        unit,
        samples: vec![value],
    }
}

/// Runs one of the container scenarios on `target`: setup, the measured
/// iterations, and teardown even after a failure.
pub(super) async fn run(
    scenario: Scenario,
    target: &Target,
    client: &CriClient,
    opts: RunOpts,
    image: &str,
) -> Result<Vec<StepResult>, String> {
    let ctx = Arc::new(Ctx::new(target, image));
    // Present after the first scenario: a warm pull, not timed.
    pull(&mut client.clone(), image).await?;
    let result = measure(scenario, target, client, opts, &ctx).await;
    let cleaned = teardown(client, &ctx).await;
    let steps = result?;
    cleaned?;
    Ok(steps)
}

async fn measure(
    scenario: Scenario,
    target: &Target,
    client: &CriClient,
    opts: RunOpts,
    ctx: &Arc<Ctx>,
) -> Result<Vec<StepResult>, String> {
    let pods = opts.pods.or(scenario.pods()).unwrap_or(1);
    match scenario {
        Scenario::ContainerLifecycle => {
            let pod = Arc::new(run_pod(&mut client.clone(), ctx, "lifecycle").await?);
            let ctx = ctx.clone();
            run_iterations(client, opts, move |mut c, i, rec| {
                let (ctx, pod) = (ctx.clone(), pod.clone());
                async move {
                    let name = format!("c{i}");
                    let marker = format!("{}-{name}", ctx.run);
                    let config = ctx.shell(&name, EXITS_ON_TERM, &marker);
                    let (id, d1) =
                        step(&rec, "CreateContainer", create(&mut c, &pod, config)).await?;
                    let (_, d2) = step(&rec, "StartContainer", start(&mut c, &id)).await?;
                    // The runtimes split the work differently: berth runs
                    // the OCI `create` in CreateContainer, containerd all
                    // of it in StartContainer.
                    rec.record("Create+Start", d1 + d2).await;
                    wait_for_term_disposition(&marker).await?;
                    step(&rec, "StopContainer", stop(&mut c, &id, 10)).await?;
                    step(&rec, "RemoveContainer", remove_container(&mut c, &id)).await?;

                    let name = format!("i{i}");
                    let marker = format!("{}-{name}", ctx.run);
                    let id = create(&mut c, &pod, ctx.shell(&name, IGNORES_TERM, &marker)).await?;
                    start(&mut c, &id).await?;
                    wait_for_term_disposition(&marker).await?;
                    step(&rec, "stop-ignoring", stop(&mut c, &id, 1)).await?;
                    remove_container(&mut c, &id).await
                }
            })
            .await
        }
        Scenario::FullCycle => {
            let ctx = ctx.clone();
            run_iterations(client, opts, move |mut c, i, rec| {
                let ctx = ctx.clone();
                async move {
                    let name = format!("full{i}");
                    let marker = format!("{}-{name}", ctx.run);
                    let (pod, d1) =
                        step(&rec, "RunPodSandbox", run_pod(&mut c, &ctx, &name)).await?;
                    let config = ctx.shell("c", EXITS_ON_TERM, &marker);
                    let (id, d2) =
                        step(&rec, "CreateContainer", create(&mut c, &pod, config)).await?;
                    let (_, d3) = step(&rec, "StartContainer", start(&mut c, &id)).await?;
                    wait_for_term_disposition(&marker).await?;
                    let (_, d4) = step(&rec, "StopContainer", stop(&mut c, &id, 10)).await?;
                    let (_, d5) =
                        step(&rec, "RemoveContainer", remove_container(&mut c, &id)).await?;
                    let (_, d6) = step(&rec, "StopPodSandbox", stop_pod(&mut c, &pod.id)).await?;
                    let (_, d7) =
                        step(&rec, "RemovePodSandbox", remove_pod(&mut c, &pod.id)).await?;
                    rec.record("total", d1 + d2 + d3 + d4 + d5 + d6 + d7).await;
                    let _ = fs::remove_dir_all(&pod.config.log_directory);
                    Ok(())
                }
            })
            .await
        }
        Scenario::UsernsStart => {
            let ctx = ctx.clone();
            // containerd 1.6 has no user namespaces for pods: only the
            // plain half runs there.
            let userns_too = matches!(target, Target::Berth(_));
            run_iterations(client, opts, move |mut c, i, rec| {
                let ctx = ctx.clone();
                async move {
                    let base = 65536 * (4000 + u32::try_from(i).unwrap_or(0));
                    let userns = user_namespace(base);
                    let mut pods = Vec::new();
                    for (label, u) in [("plain", None), ("userns", Some(&userns))] {
                        if u.is_some() && !userns_too {
                            continue;
                        }
                        let name = format!("{label}{i}");
                        let step_name = |s: &str| format!("{label} {s}");
                        let (pod, d1) = step(
                            &rec,
                            &step_name("RunPodSandbox"),
                            run_pod_in(&mut c, &ctx, &name, u),
                        )
                        .await?;
                        let mut config = ctx.container("c", SLEEP);
                        if let Some(u) = u {
                            config
                                .linux
                                .get_or_insert_with(Default::default)
                                .security_context
                                .get_or_insert_with(Default::default)
                                .namespace_options = Some(NamespaceOption {
                                pid: NamespaceMode::Container as i32,
                                userns_options: Some(u.clone()),
                                ..Default::default()
                            });
                        }
                        let (id, d2) = step(
                            &rec,
                            &step_name("CreateContainer"),
                            create(&mut c, &pod, config),
                        )
                        .await?;
                        let (_, d3) =
                            step(&rec, &step_name("StartContainer"), start(&mut c, &id)).await?;
                        rec.record(&step_name("total"), d1 + d2 + d3).await;
                        pods.push(pod);
                    }
                    for pod in pods {
                        stop_pod(&mut c, &pod.id).await?;
                        remove_pod(&mut c, &pod.id).await?;
                        let _ = fs::remove_dir_all(&pod.config.log_directory);
                    }
                    Ok(())
                }
            })
            .await
        }
        Scenario::ExecSync => {
            let mut c = client.clone();
            let pod = run_pod(&mut c, ctx, "exec").await?;
            let id = create(&mut c, &pod, ctx.container("sleep", SLEEP)).await?;
            start(&mut c, &id).await?;
            let id = Arc::new(id);
            run_iterations(client, opts, move |mut c, _, rec| {
                let id = id.clone();
                async move {
                    for (name, cmd, want) in [
                        ("ExecSync true", &["true"][..], ""),
                        ("ExecSync echo hello", &["echo", "hello"][..], "hello\n"),
                    ] {
                        let req = ExecSyncRequest {
                            container_id: id.to_string(),
                            cmd: cmd.iter().map(|s| s.to_string()).collect(),
                            timeout: 10,
                        };
                        let start = Instant::now();
                        let r = c
                            .runtime
                            .exec_sync(req)
                            .await
                            .map_err(|e| format!("{name}: {e}"))?
                            .into_inner();
                        rec.record(name, start.elapsed()).await;
                        if r.exit_code != 0 || r.stdout != want.as_bytes() {
                            return Err(format!(
                                "{name}: exit {}, stdout {:?}, stderr {:?}",
                                r.exit_code,
                                String::from_utf8_lossy(&r.stdout),
                                String::from_utf8_lossy(&r.stderr)
                            ));
                        }
                    }
                    Ok(())
                }
            })
            .await
        }
        Scenario::Stats100 | Scenario::Stats250 => {
            super::accounting::measure(target, client, opts, ctx, pods).await
        }
        Scenario::ExecStream
        | Scenario::AttachFirstByte
        | Scenario::PortForward
        | Scenario::AttachMemory => {
            super::streams::measure(scenario, target, client, opts, ctx).await
        }
        Scenario::List100 | Scenario::List250 => {
            start_pods(client, ctx, pods).await?;
            settle().await;
            run_iterations(client, opts, move |mut c, _, rec| async move {
                let (r, _) = step(&rec, "ListPodSandbox", async {
                    c.runtime
                        .list_pod_sandbox(ListPodSandboxRequest::default())
                        .await
                        .map_err(|e| format!("ListPodSandbox: {e}"))
                })
                .await?;
                let found = r.into_inner().items.len();
                if found < pods {
                    return Err(format!("ListPodSandbox: {found} pods, want {pods}"));
                }
                let (r, _) = step(&rec, "ListContainers", async {
                    c.runtime
                        .list_containers(ListContainersRequest::default())
                        .await
                        .map_err(|e| format!("ListContainers: {e}"))
                })
                .await?;
                let found = r.into_inner().containers.len();
                if found < pods {
                    return Err(format!("ListContainers: {found} containers, want {pods}"));
                }
                Ok(())
            })
            .await
        }
        Scenario::Density20 | Scenario::Density100 | Scenario::Density250 => {
            // One sample per round: the scenario is its own iteration.
            let started = Instant::now();
            start_pods(client, ctx, pods).await?;
            let wall = started.elapsed().as_secs_f64();
            let mut steps = vec![single("start all", "s", wall)];
            // As idle-memory: let the start-up work settle before reading.
            settle().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Some(m) = target.memory() {
                if m.shim_count != pods {
                    eprintln!(
                        "berth-bench: {} on {}: {} shims for {pods} pods",
                        scenario.name(),
                        target.name(),
                        m.shim_count
                    );
                }
                let per_shim = |kib: u64| mib(kib) / m.shim_count.max(1) as f64;
                steps.extend([
                    single(
                        "runtime RSS",
                        "MiB",
                        mib(m.daemon.rss_kib + m.shims.rss_kib),
                    ),
                    single(
                        "runtime PSS",
                        "MiB",
                        mib(m.daemon.pss_kib + m.shims.pss_kib),
                    ),
                    single("daemon RSS", "MiB", mib(m.daemon.rss_kib)),
                    single("daemon PSS", "MiB", mib(m.daemon.pss_kib)),
                    single("shim RSS avg", "MiB", per_shim(m.shims.rss_kib)),
                    single("shim PSS avg", "MiB", per_shim(m.shims.pss_kib)),
                ]);
            }
            let started = Instant::now();
            let ids = our_pods(client, ctx).await?;
            let errors = remove_pods(client, ids).await;
            if !errors.is_empty() {
                return Err(format!("removing pods: {}", errors.join("; ")));
            }
            steps.push(single("remove all", "s", started.elapsed().as_secs_f64()));
            Ok(steps)
        }
        other => Err(format!("{} is not a container scenario", other.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_masks() {
        let status = "Name:\tsh\nSigIgn:\t0000000000004000\nSigCgt:\t0000000000010002\n";
        assert!(bit_set(status, "SigIgn:", 15));
        assert!(!bit_set(status, "SigCgt:", 15));
        assert!(bit_set(status, "SigCgt:", 2));
        assert!(bit_set(status, "SigCgt:", 17));
    }
}
