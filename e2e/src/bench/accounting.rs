//! The stats scenarios: with N pods of one running container each, the
//! stats calls kubelet makes (ListContainerStats and ListPodSandboxStats,
//! every 10 s by default), a scrape of berthd's metrics endpoint (latency
//! and size), and then, over a window of kubelet-like polling (stats every
//! 10 s, a scrape every 15 s), the daemon's CPU and how much its RSS grew
//! from serving stats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_cli::client::CriClient;
use k8s_cri::v1::*;

use super::containers::{Ctx, single, start_pods, step};
use super::scenario::{RunOpts, StepResult, run_iterations, settle};
use super::target::Target;

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), 1-based 14
    // and 15 overall: 12th and 13th after ") ".
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

async fn scrape(addr: std::net::SocketAddr) -> Result<usize, String> {
    let r = tokio::task::spawn_blocking(move || crate::http::request(addr, "GET", "/metrics", &[]))
        .await
        .map_err(|e| format!("scrape: {e}"))?
        .map_err(|e| format!("scrape: {e}"))?;
    if r.status != 200 {
        return Err(format!("scrape: HTTP {}", r.status));
    }
    Ok(r.body.len())
}

async fn list_stats(c: &mut CriClient, pods: usize) -> Result<(), String> {
    let n = c
        .runtime
        .list_container_stats(ListContainerStatsRequest::default())
        .await
        .map_err(|e| format!("ListContainerStats: {e}"))?
        .into_inner()
        .stats
        .len();
    if n < pods {
        return Err(format!("ListContainerStats: {n} containers, want {pods}"));
    }
    let n = c
        .runtime
        .list_pod_sandbox_stats(ListPodSandboxStatsRequest::default())
        .await
        .map_err(|e| format!("ListPodSandboxStats: {e}"))?
        .into_inner()
        .stats
        .len();
    if n < pods {
        return Err(format!("ListPodSandboxStats: {n} pods, want {pods}"));
    }
    Ok(())
}

pub(super) async fn measure(
    target: &Target,
    client: &CriClient,
    opts: RunOpts,
    ctx: &Arc<Ctx>,
    pods: usize,
) -> Result<Vec<StepResult>, String> {
    start_pods(client, ctx, pods).await?;
    settle().await;
    let rss_before = target.memory().map(|m| m.daemon.rss_kib);
    let metrics = target.metrics_addr();
    let mut steps = run_iterations(client, opts, move |mut c, _, rec| async move {
        let (r, _) = step(&rec, "ListContainerStats", async {
            c.runtime
                .list_container_stats(ListContainerStatsRequest::default())
                .await
                .map_err(|e| format!("ListContainerStats: {e}"))
        })
        .await?;
        let n = r.into_inner().stats.len();
        if n < pods {
            return Err(format!("ListContainerStats: {n} containers, want {pods}"));
        }
        let (r, _) = step(&rec, "ListPodSandboxStats", async {
            c.runtime
                .list_pod_sandbox_stats(ListPodSandboxStatsRequest::default())
                .await
                .map_err(|e| format!("ListPodSandboxStats: {e}"))
        })
        .await?;
        let n = r.into_inner().stats.len();
        if n < pods {
            return Err(format!("ListPodSandboxStats: {n} pods, want {pods}"));
        }
        if let Some(addr) = metrics {
            step(&rec, "scrape /metrics", scrape(addr)).await?;
        }
        Ok(())
    })
    .await?;
    if let Some(addr) = metrics {
        let size = scrape(addr).await?;
        steps.push(single("scrape size", "KiB", size as f64 / 1024.0));
    }

    // kubelet-like polling: stats every 10 s, a scrape every 15 s.
    if let Some(pid) = target.daemon_pid()
        && !opts.poll.is_zero()
    {
        let mut c = client.clone();
        let before = cpu_ticks(pid).ok_or("reading the daemon's CPU time")?;
        let started = Instant::now();
        let mut next_stats = Duration::ZERO;
        let mut next_scrape = Duration::ZERO;
        while started.elapsed() < opts.poll {
            let now = started.elapsed();
            if now >= next_stats {
                list_stats(&mut c, pods).await?;
                next_stats += Duration::from_secs(10);
            }
            if let Some(addr) = metrics
                && now >= next_scrape
            {
                scrape(addr).await?;
                next_scrape += Duration::from_secs(15);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ticks = cpu_ticks(pid).ok_or("reading the daemon's CPU time")? - before;
        let core = ticks as f64 / clock_ticks() / started.elapsed().as_secs_f64();
        steps.push(single("daemon CPU while polled", "% core", core * 100.0));
    }
    if let (Some(before), Some(m)) = (rss_before, target.memory()) {
        let grew = m.daemon.rss_kib as f64 - before as f64;
        steps.push(single("daemon RSS growth", "MiB", grew / 1024.0));
    }
    Ok(steps)
}
