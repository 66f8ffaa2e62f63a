//! The `berth` command line against a real berthd.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::process::{Command, Output};

use berth_e2e::{Berthd, bin_path, root_or_skip};

fn berth(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin_path("berth"));
    cmd.args(args).env_remove("BERTH_RUNTIME_ENDPOINT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "berth failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn version_and_info_in_every_format() {
    if !root_or_skip("version_and_info_in_every_format") {
        return;
    }
    let d = Berthd::start("cli");
    let ep = format!("unix://{}", d.socket.display());
    let nocfg = d.dir.join("no-crictl.yaml");
    let base = ["--config", nocfg.to_str().unwrap(), "-r", &ep];

    let table = stdout(&berth(&[&base[..], &["version"]].concat(), &[]));
    assert!(table.contains("RuntimeName:  berth"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&berth(
        &[&base[..], &["version", "-o", "json"]].concat(),
        &[],
    )))
    .unwrap();
    assert_eq!(json["runtime_api_version"], "v1");
    let yaml = stdout(&berth(
        &[&base[..], &["version", "-o", "yaml"]].concat(),
        &[],
    ));
    assert!(yaml.contains("runtime_name: berth"), "{yaml}");

    let info = stdout(&berth(&[&base[..], &["info"]].concat(), &[]));
    assert!(info.contains("RuntimeReady   true"), "{info}");
    assert!(
        info.contains("NetworkReady   false    NetworkPluginNotReady"),
        "{info}"
    );
    let info: serde_json::Value = serde_json::from_str(&stdout(&berth(
        &[&base[..], &["info", "-o", "json"]].concat(),
        &[],
    )))
    .unwrap();
    assert_eq!(info["conditions"][0]["type"], "RuntimeReady");
    assert_eq!(info["cgroups"]["driver"], "cgroupfs");

    let rc = stdout(&berth(&[&base[..], &["runtime-config"]].concat(), &[]));
    assert_eq!(rc, "CgroupDriver:  cgroupfs\n");
}

#[test]
fn endpoint_from_env_and_from_crictl_config() {
    if !root_or_skip("endpoint_from_env_and_from_crictl_config") {
        return;
    }
    let d = Berthd::start("cliep");
    let ep = format!("unix://{}", d.socket.display());
    let nocfg = d.dir.join("no-crictl.yaml");
    let out = berth(
        &["--config", nocfg.to_str().unwrap(), "version"],
        &[("BERTH_RUNTIME_ENDPOINT", &ep)],
    );
    assert!(stdout(&out).contains("berth"));

    let crictl = d.dir.join("crictl.yaml");
    std::fs::write(
        &crictl,
        format!("runtime-endpoint: {ep}\nimage-endpoint: {ep}\ntimeout: 5\ndebug: false\n"),
    )
    .unwrap();
    let out = berth(&["--config", crictl.to_str().unwrap(), "version"], &[]);
    assert!(stdout(&out).contains("berth"));
}

#[test]
fn unreachable_daemon_is_one_line_and_exit_1() {
    // No daemon needed: this runs as any user.
    let dir = std::env::temp_dir().join(format!("berth-cli-{}", std::process::id()));
    let sock = dir.join("nobody.sock");
    let out = berth(
        &[
            "--config",
            "/nonexistent/crictl.yaml",
            "-r",
            &format!("unix://{}", sock.display()),
            "version",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("berth: cannot reach the runtime at unix://"),
        "{err}"
    );
    assert!(err.contains("is berthd running?"), "{err}");

    let out = berth(&["-r", "tcp://127.0.0.1:1", "version"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unix sockets"));
}
