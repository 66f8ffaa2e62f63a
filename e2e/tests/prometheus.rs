//! deploy/prometheus and deploy/grafana against the real thing: Debian's
//! promtool unit-tests the alert rules, and a real Prometheus server
//! scrapes a berthd running real pods, evaluates every recording and
//! alerting rule, fires the OOM alert for a real OOM kill, and answers
//! every query of the Grafana dashboard.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_e2e::fixture;
use berth_e2e::http::{self, urlencode};
use berth_e2e::root_or_skip;
use berth_e2e::setup::setup_with;
use k8s_cri::v1::*;
use serde_json::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn promtool(args: &[&str], dir: &Path) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (apt prometheus; scripts/install-deps installs it)");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_rules_pass_promtool_and_their_unit_tests() {
    let dir = deploy().join("prometheus");
    promtool(&["check", "rules", "berth-rules.yml"], &dir);
    promtool(&["check", "config", "prometheus.yml"], &dir);
    promtool(&["test", "rules", "berth-rules.test.yml"], &dir);
}

/// A Prometheus server on a free loopback port, killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `target` every second and evaluates deploy's rules every
    /// second; its data goes under `dir`.
    fn start(dir: &Path, target: SocketAddr) -> Prometheus {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let rules = deploy().join("prometheus/berth-rules.yml");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules:?}\n\
                 scrape_configs:\n  - job_name: berth\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("prometheus (apt prometheus; scripts/install-deps installs it)");
        let p = Prometheus { child, addr, log };
        p.wait_for("readiness", || {
            http::request(p.addr, "GET", "/-/ready", &[]).is_ok_and(|r| r.status == 200)
        });
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&self, what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ok() {
            assert!(Instant::now() < deadline, "{what}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn api(&self, path: &str) -> Value {
        let r = http::get(self.addr, path);
        let v: Value =
            serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body));
        assert_eq!(v["status"], "success", "{path}: {v}");
        v["data"].clone()
    }

    /// An instant query's result vector.
    fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api(&format!("/api/v1/query?query={}", urlencode(expr)));
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The value of the first series an instant query returns.
    fn value(&self, expr: &str) -> Option<f64> {
        self.query(expr)
            .first()
            .and_then(|s| s["value"][1].as_str().and_then(|v| v.parse().ok()))
    }
}

/// The dashboard's queries as Prometheus sees them: Grafana's variables
/// replaced by what "All" and the default interval stand for.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy().join("grafana/berth-dashboard.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*")
                .replace("$namespace", ".*");
            out.push((p["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    assert!(out.len() >= 20, "{} queries", out.len());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_server_scrapes_berth_evaluates_the_rules_and_the_dashboard() {
    if !root_or_skip("a_prometheus_server_scrapes_berth_evaluates_the_rules_and_the_dashboard") {
        return;
    }
    let mut s = setup_with("prometheus", "berth", fixture::busybox(), |b| {
        b.config("metrics", "stats_interval", "\"1s\"")
    })
    .await;
    // A busy loop that asked for half a core, with a memory limit.
    let mut cfg = s.config("burn", &["sh", "-c", "while :; do :; done"]);
    cfg.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            cpu_shares: 512,
            memory_limit_in_bytes: 256 * 1024 * 1024,
            ..Default::default()
        }),
        ..Default::default()
    });
    let burn = s.create(cfg).await.unwrap();
    s.start(&burn).await;

    let prom = Prometheus::start(&s.e.d.dir.join("prometheus"), s.e.d.metrics_addr());
    prom.wait_for("berth scraped", || {
        prom.value("up{job=\"berth\"}") == Some(1.0)
            && prom.value("berth_container_oom_kills_total").is_some()
    });

    // An OOM kill after Prometheus has seen the counter at 0.
    let hog = s.run_until_oom_killed("hog").await;
    prom.wait_for("the OOM alert to fire", || {
        prom.value("ALERTS{alertname=\"BerthContainerOOMKilled\",alertstate=\"firing\"}")
            == Some(1.0)
    });

    // Requested against used: the loop uses well over its half core.
    let pod = "{namespace=\"e2e\",pod=\"pod\"}";
    prom.wait_for("the pod's CPU use over its request", || {
        prom.value(&format!(
            "namespace_pod:berth_container_cpu_usage_over_request:ratio{pod}"
        ))
        .is_some_and(|r| r > 0.5)
    });
    assert_eq!(
        prom.value(&format!(
            "namespace_pod:berth_container_cpu_request_cores:sum{pod}"
        )),
        Some(0.5)
    );
    let used = prom
        .value(&format!(
            "namespace_pod:berth_container_cpu_usage_cores:rate1m{pod}"
        ))
        .unwrap();
    let cpus = std::thread::available_parallelism().unwrap().get() as f64;
    assert!((0.25..=cpus * 1.05).contains(&used), "{used} cores used");

    // Every rule evaluates cleanly.
    let groups = prom.api("/api/v1/rules");
    let mut rules = 0;
    for g in groups["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            rules += 1;
            assert_eq!(r["health"], "ok", "rule {}: {}", r["name"], r["lastError"]);
        }
    }
    assert_eq!(rules, 16);

    // Every dashboard query is valid PromQL over berth's series, and all
    // but those about events that did not happen here return data.
    let mut empty = Vec::new();
    for (panel, expr) in dashboard_queries() {
        if prom.query(&expr).is_empty() {
            empty.push(format!("{panel}: {expr}"));
        }
    }
    let may_be_empty = ["CNI operations", "Image pulls", "Image bytes pulled"];
    empty.retain(|e| !may_be_empty.iter().any(|p| e.starts_with(p)));
    assert!(
        empty.is_empty(),
        "queries without data:\n{}",
        empty.join("\n")
    );

    drop(prom);
    s.stop(&burn, 0).await;
    s.remove(&burn).await;
    s.remove(&hog).await;
    s.finish().await;
}
