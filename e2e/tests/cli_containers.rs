//! The berth CLI's container commands against a real berthd, as root:
//! import, run, ps, logs, exec-sync, stop, rm, create/start, inspect.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::fs;
use std::process::{Command, Output};

use berth_e2e::fixture::{self, busybox};
use berth_e2e::podnet::{Plugins, env};
use berth_e2e::{bin_path, root_or_skip};

fn berth(ep: &str, args: &[&str]) -> Output {
    Command::new(bin_path("berth"))
        .arg("-r")
        .arg(ep)
        .args(args)
        .env_remove("BERTH_RUNTIME_ENDPOINT")
        .output()
        .unwrap()
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "berth failed ({}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn containers_from_the_command_line() {
    if !root_or_skip("containers_from_the_command_line") {
        return;
    }
    let e = env("clictr", Plugins::Debian);
    let ep = format!("unix://{}", e.d.socket.display());
    let dir = &e.d.dir;
    let archive = dir.join("busybox.tar");
    fixture::write_oci_archive(&busybox::busybox(), "berth.local/test/busybox:v1", &archive);
    ok(berth(&ep, &["image", "import", archive.to_str().unwrap()]));

    let logs = dir.join("logs");
    fs::create_dir_all(&logs).unwrap();
    let pod_yaml = dir.join("pod.yaml");
    fs::write(
        &pod_yaml,
        format!(
            "metadata:\n  name: clipod\n  namespace: e2e\nhostname: clipod\nlog_directory: {}\n",
            logs.display()
        ),
    )
    .unwrap();
    let ctr_yaml = dir.join("ctr.yaml");
    fs::write(
        &ctr_yaml,
        "metadata:\n  name: talker\nimage:\n  image: berth.local/test/busybox:v1\n\
         command: [sh, -c, \"echo hello-out; echo hello-err >&2; trap 'exit 0' TERM; while :; do sleep 0.1; done\"]\n\
         envs:\n  - key: GREETING\n    value: hi\nlog_path: talker.log\n",
    )
    .unwrap();

    let cid = ok(berth(
        &ep,
        &[
            "run",
            ctr_yaml.to_str().unwrap(),
            pod_yaml.to_str().unwrap(),
        ],
    ))
    .trim()
    .to_owned();
    assert_eq!(cid.len(), 64, "{cid}");
    assert!(ok(berth(&ep, &["ps", "-q"])).contains(&cid));

    let out = berth(
        &ep,
        &["exec-sync", &cid, "sh", "-c", "echo $GREETING; exit 4"],
    );
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");

    // The log has both streams, split back onto stdout and stderr.
    let mut seen = false;
    for _ in 0..50 {
        let o = berth(&ep, &["logs", &cid]);
        if String::from_utf8_lossy(&o.stdout).contains("hello-out")
            && String::from_utf8_lossy(&o.stderr).contains("hello-err")
        {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(seen, "logs never showed both streams");

    let inspect = ok(berth(&ep, &["inspect", &cid]));
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let pod = v["info"]["sandboxID"].as_str().unwrap().to_owned();
    assert_eq!(v["status"]["metadata"]["name"], "talker", "{inspect}");

    ok(berth(&ep, &["stop", "-t", "5", &cid]));
    let ps = ok(berth(&ep, &["ps", "-a"]));
    assert!(ps.contains("Exited"), "{ps}");
    ok(berth(&ep, &["rm", &cid]));
    assert!(!ok(berth(&ep, &["ps", "-a", "-q"])).contains(&cid));

    // create + start in the existing pod.
    let cid2 = ok(berth(
        &ep,
        &[
            "create",
            &pod,
            ctr_yaml.to_str().unwrap(),
            pod_yaml.to_str().unwrap(),
        ],
    ))
    .trim()
    .to_owned();
    ok(berth(&ep, &["start", &cid2]));
    assert!(ok(berth(&ep, &["ps", "-q", "--pod", &pod])).contains(&cid2));

    // Bad input: one line, exit 1.
    let o = berth(
        &ep,
        &[
            "create",
            "nosuchpod",
            ctr_yaml.to_str().unwrap(),
            pod_yaml.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not found"), "{err}");

    // logs: --tail, --timestamps, and --follow returning once the
    // container has exited with every line shown.
    let counter_yaml = dir.join("counter.yaml");
    fs::write(
        &counter_yaml,
        "metadata:\n  name: counter\nimage:\n  image: berth.local/test/busybox:v1\n\
         command: [sh, -c, \"for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done\"]\n\
         log_path: counter.log\n",
    )
    .unwrap();
    let counter = ok(berth(
        &ep,
        &[
            "create",
            &pod,
            counter_yaml.to_str().unwrap(),
            pod_yaml.to_str().unwrap(),
        ],
    ))
    .trim()
    .to_owned();
    ok(berth(&ep, &["start", &counter]));
    let followed = ok(berth(&ep, &["logs", "-f", &counter]));
    assert_eq!(followed, "line1\nline2\nline3\nline4\nline5\n");
    assert_eq!(
        ok(berth(&ep, &["logs", "--tail", "2", &counter])),
        "line4\nline5\n"
    );
    let stamped = ok(berth(
        &ep,
        &["logs", "--timestamps", "--tail", "1", &counter],
    ));
    assert!(
        stamped.starts_with("20") && stamped.trim_end().ends_with(" line5"),
        "{stamped}"
    );
    assert_eq!(
        ok(berth(&ep, &["logs", "--since", "1h", &counter]))
            .lines()
            .count(),
        5
    );

    ok(berth(&ep, &["rmp", &pod]));
    assert!(ok(berth(&ep, &["ps", "-a", "-q"])).trim().is_empty());

    // `run` that fails after the pod was made leaves no pod behind.
    let bad_yaml = dir.join("bad.yaml");
    fs::write(
        &bad_yaml,
        "metadata:\n  name: bad\nimage:\n  image: berth.local/test/missing:v1\ncommand: [true]\n",
    )
    .unwrap();
    let o = berth(
        &ep,
        &[
            "run",
            bad_yaml.to_str().unwrap(),
            pod_yaml.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not found"));
    assert!(ok(berth(&ep, &["pods", "-q"])).trim().is_empty());
}

#[test]
fn stats_statsp_and_top_from_the_command_line() {
    if !root_or_skip("stats_statsp_and_top_from_the_command_line") {
        return;
    }
    let e = berth_e2e::podnet::env_built("clistats", Plugins::Debian, None, |b| {
        b.config("metrics", "stats_interval", "\"1s\"")
    });
    let ep = format!("unix://{}", e.d.socket.display());
    let dir = &e.d.dir;
    let archive = dir.join("busybox.tar");
    fixture::write_oci_archive(&busybox::busybox(), "berth.local/test/busybox:v1", &archive);
    ok(berth(&ep, &["image", "import", archive.to_str().unwrap()]));
    let pod_yaml = dir.join("pod.yaml");
    fs::write(
        &pod_yaml,
        "metadata:\n  name: busy\n  namespace: e2e\n  uid: u-busy\n",
    )
    .unwrap();
    // A busy loop that asked for half a core, limited to one and 256 MiB.
    let ctr_yaml = dir.join("ctr.yaml");
    fs::write(
        &ctr_yaml,
        "metadata:\n  name: burn\nimage:\n  image: berth.local/test/busybox:v1\n\
         command: [sh, -c, \"while :; do :; done\"]\n\
         linux:\n  resources:\n    cpu_shares: 512\n    cpu_period: 100000\n    cpu_quota: 100000\n    memory_limit_in_bytes: 268435456\n",
    )
    .unwrap();
    let cid = ok(berth(
        &ep,
        &[
            "run",
            ctr_yaml.to_str().unwrap(),
            pod_yaml.to_str().unwrap(),
        ],
    ))
    .trim()
    .to_owned();

    // Two samples make a CPU rate: wait for the loop to show.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let line = loop {
        let out = ok(berth(&ep, &["stats"]));
        let line = out
            .lines()
            .find(|l| l.starts_with(&cid[..13]))
            .map(str::to_owned);
        let cpu: f64 = line
            .as_deref()
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0.0);
        if cpu > 20.0 {
            assert!(out.starts_with("CONTAINER"), "{out}");
            assert!(cpu <= 105.0, "held to one core: {out}");
            break line.unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no CPU in:\n{out}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    assert!(line.contains("burn"), "{line}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(berth(&ep, &["stats", "-o", "json"]))).unwrap();
    assert_eq!(json[0]["attributes"]["id"], cid.as_str(), "{json}");

    let out = ok(berth(&ep, &["statsp"]));
    assert!(out.starts_with("POD"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("busy ")), "{out}");

    // The pod's rate needs two samples of its own cgroup too.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (out, row) = loop {
        let out = ok(berth(&ep, &["top", "--sort", "memory"]));
        let row: Vec<String> = out
            .lines()
            .find(|l| l.starts_with("e2e "))
            .unwrap_or_else(|| panic!("{out}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let used: f64 = row[2].trim_end_matches('m').parse().unwrap();
        if used > 200.0 {
            break (out, row);
        }
        assert!(std::time::Instant::now() < deadline, "no CPU in:\n{out}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    // NAMESPACE POD CPU CPU-REQ CPU-LIM MEM MEM-LIM
    assert_eq!(row[1], "busy", "{out}");
    assert_eq!(row[3], "500m", "{out}");
    assert_eq!(row[4], "1000m", "{out}");
    assert_eq!(row[6], "268.4MB", "{out}");
    assert!(out.starts_with("NAMESPACE"), "{out}");

    let pod = ok(berth(&ep, &["pods", "-q"])).trim().to_owned();
    ok(berth(&ep, &["rmp", &pod]));
    let out = ok(berth(&ep, &["stats", "-a"]));
    assert_eq!(out.lines().count(), 1, "only the header is left: {out}");
}
