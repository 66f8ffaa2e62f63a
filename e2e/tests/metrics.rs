//! berthd's Prometheus endpoint end to end, as root: what a scrape shows
//! about real pods and containers (their memory, their requests and
//! limits, an OOM kill), the health families, content negotiation, and
//! the exposition checked by Debian's promtool.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::time::{Duration, Instant};

use berth_e2e::fixture;
use berth_e2e::http::{self, sample};
use berth_e2e::root_or_skip;
use berth_e2e::setup::{Setup, setup_with};
use k8s_cri::v1::*;

const MIB: f64 = 1024.0 * 1024.0;

async fn scene(tag: &str) -> Setup {
    setup_with(tag, "berth", fixture::busybox(), |b| {
        b.config("metrics", "stats_interval", "\"1s\"")
            .config("pod", "shm_size_mib", "256")
    })
    .await
}

fn scrape(s: &Setup) -> String {
    let r = http::get(s.e.d.metrics_addr(), "/metrics");
    assert_eq!(r.status, 200, "{r:?}");
    r.body
}

/// Scrapes until `ok` holds (at most 30 s); returns that exposition.
async fn scrape_until(s: &Setup, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(s);
        if ok(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what}: last scrape\n{text}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

const POD: [(&str, &str); 3] = [("namespace", "e2e"), ("pod", "pod"), ("uid", "uid-pod")];

fn labels<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    POD.iter().chain(extra).copied().collect()
}

/// `promtool check metrics` on an exposition: lint errors fail the test.
fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (apt prometheus; scripts/install-deps installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_shows_each_pod_and_container_and_forgets_removed_ones() {
    if !root_or_skip("a_scrape_shows_each_pod_and_container_and_forgets_removed_ones") {
        return;
    }
    let mut s = scene("metrics-scrape").await;
    let addr = s.e.d.metrics_addr();
    assert!(addr.ip().is_loopback());

    // The other routes.
    assert_eq!(http::get(addr, "/healthz").status, 200);
    assert_eq!(http::get(addr, "/readyz").status, 200);
    assert_eq!(http::get(addr, "/nope").status, 404);
    let post = http::request(addr, "POST", "/metrics", &[("Content-Length", "0")]).unwrap();
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    let head = http::request(addr, "HEAD", "/metrics", &[]).unwrap();
    assert_eq!((head.status, head.body.as_str()), (200, ""));

    // A container holding 64 MiB in tmpfs, with a request and limits.
    let mut cfg = s.config(
        "mem",
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/dev/shm/fill bs=1M count=64 && sleep 1000",
        ],
    );
    cfg.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            cpu_shares: 512,
            cpu_period: 100_000,
            cpu_quota: 150_000,
            memory_limit_in_bytes: 512 * 1024 * 1024,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = s.create(cfg).await.unwrap();
    s.start(&id).await;

    let c = labels(&[("container", "mem")]);
    let text = scrape_until(&s, "the container's working set", |t| {
        sample(t, "berth_container_memory_working_set_bytes", &c).is_some_and(|v| v >= 64.0 * MIB)
    })
    .await;
    let ws = sample(&text, "berth_container_memory_working_set_bytes", &c).unwrap();
    assert!(ws < 128.0 * MIB, "working set {ws} for 64 MiB held");
    let pod_ws = sample(&text, "berth_pod_memory_working_set_bytes", &POD).unwrap();
    assert!(pod_ws >= ws, "the pod holds its container: {pod_ws} < {ws}");
    // Requests and limits beside use: what the node promised.
    assert_eq!(
        sample(&text, "berth_container_cpu_request_cores", &c),
        Some(0.5)
    );
    assert_eq!(
        sample(&text, "berth_container_cpu_limit_cores", &c),
        Some(1.5)
    );
    assert_eq!(
        sample(&text, "berth_container_memory_limit_bytes", &c),
        Some(512.0 * MIB)
    );
    assert!(sample(&text, "berth_container_cpu_usage_seconds_total", &c).is_some());
    assert!(
        sample(
            &text,
            "berth_pod_network_receive_bytes_total",
            &labels(&[("interface", "eth0")])
        )
        .is_some(),
        "{text}"
    );
    assert!(sample(&text, "berth_node_cpu_capacity_cores", &[]).unwrap() >= 1.0);
    assert!(sample(&text, "berth_node_memory_capacity_bytes", &[]).unwrap() > 1e9);

    // Counts, events and berth's own cost.
    assert_eq!(
        sample(&text, "berth_pods", &[("state", "ready")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "berth_containers", &[("state", "running")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "berth_container_starts_total",
            &[("result", "success")]
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "berth_shims", &[]), Some(1.0));
    assert!(sample(&text, "berth_shim_resident_bytes", &[]).unwrap() > 0.0);
    assert!(sample(&text, "berth_daemon_resident_bytes", &[]).unwrap() > 1e6);
    assert_eq!(
        sample(&text, "berth_image_pulls_total", &[("result", "success")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "berth_image_pulls_in_progress", &[]),
        Some(0.0)
    );
    assert!(sample(&text, "berth_image_pull_bytes_total", &[]).unwrap() > 0.0);
    assert_eq!(
        sample(
            &text,
            "berth_cri_requests_total",
            &[("method", "RunPodSandbox"), ("code", "OK")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "berth_cni_operations_total",
            &[("op", "add"), ("result", "success")]
        ),
        Some(1.0)
    );
    for phase in [
        "sandbox",
        "network",
        "image_pull",
        "container_create",
        "container_start",
    ] {
        assert_eq!(
            sample(
                &text,
                "berth_pod_start_phase_seconds_count",
                &[("phase", phase)]
            ),
            Some(1.0),
            "phase {phase}"
        );
    }
    promtool_check(&text);

    // A failed call is counted under its code.
    let _ =
        s.c.runtime
            .container_status(ContainerStatusRequest {
                container_id: "no-such-container".into(),
                verbose: false,
            })
            .await
            .unwrap_err();
    let text = scrape(&s);
    assert_eq!(
        sample(
            &text,
            "berth_cri_requests_total",
            &[("method", "ContainerStatus"), ("code", "NotFound")]
        ),
        Some(1.0)
    );

    // OpenMetrics on request.
    let om = http::request(
        addr,
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
    )
    .unwrap();
    assert!(
        om.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        om.headers
    );
    assert!(om.body.ends_with("# EOF\n"));

    // Removed: its series go with it.
    s.stop(&id, 0).await;
    s.remove(&id).await;
    let text = scrape(&s);
    assert!(!text.contains("container=\"mem\""), "{text}");
    assert_eq!(
        sample(&text, "berth_containers", &[("state", "running")]),
        Some(0.0)
    );
    s.c.runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: s.pod.clone(),
        })
        .await
        .unwrap();
    let text = scrape(&s);
    assert!(!text.contains("pod=\"pod\""), "{text}");
    assert_eq!(
        sample(&text, "berth_pods", &[("state", "notready")]),
        Some(1.0)
    );
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_is_counted() {
    if !root_or_skip("an_oom_kill_is_counted") {
        return;
    }
    let mut s = scene("metrics-oom").await;
    let id = s.run_until_oom_killed("hog").await;
    let text = scrape(&s);
    assert_eq!(
        sample(&text, "berth_container_oom_kills_total", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "berth_container_exits_total",
            &[("reason", "OOMKilled")]
        ),
        Some(1.0)
    );
    s.remove(&id).await;
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_scrapers_never_hold_up_cri_calls() {
    if !root_or_skip("slow_scrapers_never_hold_up_cri_calls") {
        return;
    }
    let mut s = scene("metrics-slow").await;
    let addr = s.e.d.metrics_addr();
    // More connections than the endpoint serves at once, each stuck in the
    // middle of its request line, and one that asked for /metrics and
    // never reads the answer.
    let mut stuck = Vec::new();
    for _ in 0..40 {
        use std::io::Write;
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(b"GET /metr").unwrap();
        stuck.push(c);
    }
    // CRI calls, including the ones that read the same samples, answer.
    let id = s.run("sleeper", &["sleep", "1000"]).await;
    let stats =
        s.c.runtime
            .list_container_stats(ListContainerStatsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .stats;
    assert_eq!(stats.len(), 1);
    s.c.runtime
        .version(VersionRequest::default())
        .await
        .unwrap();
    // Once they go, the endpoint serves again.
    drop(stuck);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match http::request(addr, "GET", "/healthz", &[]) {
            Ok(r) if r.status == 200 => break,
            other => assert!(Instant::now() < deadline, "{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(scrape(&s).contains("container=\"sleeper\""));
    s.stop(&id, 0).await;
    s.remove(&id).await;
    s.finish().await;
}
