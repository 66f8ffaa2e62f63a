//! The benchmark harness cannot rot: every scenario runs once, on berth
//! alone and side by side with containerd. No number is asserted. The list
//! and density scenarios run with 3 pods instead of their 20 to 250.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::process::Command;

use berth_e2e::bench::Scenario;
use berth_e2e::root_or_skip;

/// Pods of the list and density scenarios in the smoke runs.
const PODS: &str = "3";

/// The larger list and density variants run the same code as list-100 and
/// density-20: with 3 pods they would only repeat them.
fn smoke_scenarios() -> Vec<Scenario> {
    Scenario::ALL
        .iter()
        .copied()
        .filter(|s| {
            !matches!(
                s,
                Scenario::List250
                    | Scenario::Stats250
                    | Scenario::Density100
                    | Scenario::Density250
            )
        })
        .collect()
}

fn scenario_arg() -> String {
    let names: Vec<&str> = smoke_scenarios().iter().map(|s| s.name()).collect();
    names.join(",")
}

fn bench(args: &[&str]) -> (String, serde_json::Value) {
    // One dir per test: they run in parallel, and each removes its own.
    let dir = std::env::temp_dir().join(format!(
        "berth-bench-smoke-{}-{}",
        std::process::id(),
        args[0]
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join(format!("{}.json", args[0]));
    let out = Command::new(env!("CARGO_BIN_EXE_berth-bench"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "berth-bench {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (String::from_utf8(out.stdout).unwrap(), value)
}

#[test]
fn every_scenario_runs_once_on_berth() {
    if !root_or_skip("every_scenario_runs_once_on_berth") {
        return;
    }
    let list = scenario_arg();
    let (table, json) = bench(&[
        "run",
        "--target",
        "berth",
        "-n",
        "1",
        "--pods",
        PODS,
        "--poll-seconds",
        "1",
        "-s",
        &list,
    ]);
    for s in &smoke_scenarios() {
        assert!(table.contains(s.name()), "{} missing:\n{table}", s.name());
    }
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), smoke_scenarios().len());
    for r in results {
        for step in r["steps"].as_array().unwrap() {
            let samples = step["samples"].as_array().unwrap();
            assert!(!samples.is_empty(), "{step}");
            // Times and sizes are positive. A daemon's CPU over a short
            // window may be 0, and RSS may shrink: those need only be
            // numbers.
            let name = step["step"].as_str().unwrap();
            let may_be_zero_or_less = step["unit"] == "% core" || name.ends_with("growth");
            for v in samples {
                let v = v.as_f64().unwrap();
                assert!(v.is_finite(), "{step}");
                assert!(may_be_zero_or_less || v > 0.0, "{step}");
            }
        }
    }
}

#[test]
fn compare_runs_both_runtimes_and_cleans_up() {
    if !root_or_skip("compare_runs_both_runtimes_and_cleans_up") {
        return;
    }
    let shim_sockets = || -> Vec<String> {
        std::fs::read_dir("/run/containerd/s")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into())
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = shim_sockets();
    let list = scenario_arg();
    let (table, json) = bench(&[
        "compare",
        "-n",
        "1",
        "--rounds",
        "1",
        "--pods",
        PODS,
        "--poll-seconds",
        "1",
        "-s",
        &list,
    ]);
    assert!(table.contains("ratio median"), "{table}");
    let rows = json["comparison"].as_array().unwrap();
    let steps: Vec<&str> = rows.iter().map(|r| r["step"].as_str().unwrap()).collect();
    for want in [
        "Version",
        "Status",
        "daemon RSS",
        "StartContainer",
        "stop-ignoring",
        "total",
        "ExecSync true",
        "exec true SPDY",
        "exec true WebSocket",
        "Attach to first byte",
        "connect to first byte",
        "throughput 100 MiB",
        "shim RSS attached",
        "ListContainers",
        "start all",
        "shim PSS avg",
    ] {
        assert!(steps.contains(&want), "{want} not compared: {steps:?}");
    }
    // Density measured the shims on both runtimes.
    for runtime in ["berth", "containerd"] {
        let density = json[runtime]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["scenario"] == "density-20")
            .unwrap();
        let shim = density["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == "shim RSS avg");
        assert!(shim.is_some(), "{runtime}: no shim memory in {density}");
    }
    // No containerd shim of a private containerd is left running.
    let shims = berth_e2e::memory::pids_with_flag("containerd-shim-runc-v2", "-address", |a| {
        a.starts_with("/tmp/berth-e2e/ctrd-")
    });
    assert!(shims.is_empty(), "containerd shims left: {shims:?}");
    // The private containerd left nothing on the host.
    assert_eq!(shim_sockets(), before);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("/tmp/berth-e2e/ctrd-"), "{mounts}");
}
