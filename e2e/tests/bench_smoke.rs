//! The benchmark harness cannot rot: every scenario runs once, on berth
//! alone and side by side with containerd. No number is asserted.

use std::process::Command;

use berth_e2e::bench::Scenario;
use berth_e2e::root_or_skip;

fn bench(args: &[&str]) -> (String, serde_json::Value) {
    let dir = std::env::temp_dir().join(format!("berth-bench-smoke-{}", std::process::id()));
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
    let (table, json) = bench(&["run", "--target", "berth", "-n", "1"]);
    for s in Scenario::ALL {
        assert!(table.contains(s.name()), "{} missing:\n{table}", s.name());
    }
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), Scenario::ALL.len());
    for r in results {
        for step in r["steps"].as_array().unwrap() {
            let samples = step["samples"].as_array().unwrap();
            assert!(!samples.is_empty() && samples.iter().all(|v| v.as_f64().unwrap() > 0.0));
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
    let (table, json) = bench(&["compare", "-n", "1", "--rounds", "1"]);
    assert!(table.contains("ratio median"), "{table}");
    let rows = json["comparison"].as_array().unwrap();
    let steps: Vec<&str> = rows.iter().map(|r| r["step"].as_str().unwrap()).collect();
    for want in ["Version", "Status", "daemon RSS"] {
        assert!(steps.contains(&want), "{want} not compared: {steps:?}");
    }
    // The private containerd left nothing on the host.
    assert_eq!(shim_sockets(), before);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("/tmp/berth-e2e/ctrd-"), "{mounts}");
}
