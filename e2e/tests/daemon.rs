//! berthd as a process: startup, the socket, the lock, signals, the store
//! across kill -9, readiness reporting, bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use berth_e2e::{Berthd, root_or_skip};
use k8s_cri::v1::*;
use nix::sys::signal::Signal;
use tonic::Code;

const LOOPBACK_LIST: &str =
    r#"{"cniVersion":"1.0.0","name":"e2e-loopback","plugins":[{"type":"loopback"}]}"#;

#[tokio::test]
async fn answers_version_status_and_runtime_config() {
    if !root_or_skip("answers_version_status_and_runtime_config") {
        return;
    }
    let d = Berthd::builder("basic")
        .config("cni", "bin_dirs", "[\"/usr/lib/cni\"]")
        .start();
    let mut c = d.client().await;

    let v = c
        .runtime
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "berth");
    assert_eq!(v.runtime_api_version, "v1");
    assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));

    // No network config yet: NetworkReady is false, with a reason.
    let s = c
        .runtime
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let conds = s.status.unwrap().conditions;
    let runtime = conds.iter().find(|c| c.r#type == "RuntimeReady").unwrap();
    assert!(runtime.status, "{runtime:?}");
    let net = conds.iter().find(|c| c.r#type == "NetworkReady").unwrap();
    assert!(!net.status);
    assert_eq!(net.reason, "NetworkPluginNotReady");
    assert!(
        net.message.contains("no CNI network config"),
        "{}",
        net.message
    );
    assert!(s.info.is_empty(), "info only when verbose");

    // A config written after start is picked up without a restart.
    fs::write(d.cni_conf_dir.join("10-lo.conflist"), LOOPBACK_LIST).unwrap();
    let s = c
        .runtime
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let net = s
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .unwrap();
    assert!(
        net.status,
        "{net:?} (is containernetworking-plugins installed?)"
    );
    let network: serde_json::Value = serde_json::from_str(&s.info["network"]).unwrap();
    assert_eq!(network["name"], "e2e-loopback");
    let config: serde_json::Value = serde_json::from_str(&s.info["config"]).unwrap();
    assert_eq!(config["daemon"]["root_dir"], d.root_dir.to_str().unwrap());
    assert!(s.info["configFile"].contains("config.toml"));

    let rc = c
        .runtime
        .runtime_config(RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rc.linux.unwrap().cgroup_driver,
        CgroupDriver::Cgroupfs as i32
    );
}

#[tokio::test]
async fn runtime_config_reports_the_configured_driver() {
    if !root_or_skip("runtime_config_reports_the_configured_driver") {
        return;
    }
    let d = Berthd::builder("systemd")
        .config("pod", "cgroup_driver", "\"systemd\"")
        .start();
    let mut c = d.client().await;
    let rc = c
        .runtime
        .runtime_config(RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rc.linux.unwrap().cgroup_driver,
        CgroupDriver::Systemd as i32
    );
    // Without systemd on the node the runtime says why it is not ready.
    if !std::path::Path::new("/run/systemd/system").is_dir() {
        let s = c
            .runtime
            .status(StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
        let rt = s
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.r#type == "RuntimeReady")
            .unwrap();
        assert!(!rt.status);
        assert_eq!(rt.reason, "SystemdNotRunning");
    }
}

#[tokio::test]
async fn socket_is_root_only() {
    if !root_or_skip("socket_is_root_only") {
        return;
    }
    let d = Berthd::start("sockmode");
    let m = fs::symlink_metadata(&d.socket).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    assert_eq!((m.uid(), m.gid()), (0, 0));
}

#[tokio::test]
async fn second_daemon_on_the_same_root_refuses() {
    if !root_or_skip("second_daemon_on_the_same_root_refuses") {
        return;
    }
    let d = Berthd::start("lock");
    // Same root dir, its own socket: the lock, not the socket, refuses it.
    let other_socket = d.dir.join("other.sock");
    let out = d
        .command()
        .arg("--socket")
        .arg(&other_socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another berthd"), "{err}");
    assert!(err.contains(&format!("pid {}", d.pid())), "{err}");
    assert!(!other_socket.exists());
    // The first one is unaffected.
    let mut c = d.client().await;
    c.runtime.version(VersionRequest::default()).await.unwrap();
}

#[tokio::test]
async fn sigterm_exits_zero_promptly_with_a_client_connected() {
    if !root_or_skip("sigterm_exits_zero_promptly_with_a_client_connected") {
        return;
    }
    let mut d = Berthd::start("sigterm");
    // kubelet keeps its connection open; shutdown must not wait for it.
    let mut c = d.client().await;
    c.runtime.version(VersionRequest::default()).await.unwrap();
    let status = d.signal_and_wait(Signal::SIGTERM, Duration::from_secs(2));
    assert!(status.success(), "{status}");
    assert!(!d.socket.exists(), "socket removed on exit");
    let status = {
        d.spawn_and_wait_ready();
        d.signal_and_wait(Signal::SIGINT, Duration::from_secs(2))
    };
    assert!(status.success(), "SIGINT: {status}");
}

#[tokio::test]
async fn kill9_then_restart_keeps_the_store() {
    if !root_or_skip("kill9_then_restart_keeps_the_store") {
        return;
    }
    let mut d = Berthd::start("kill9");
    {
        let mut c = d.client().await;
        c.runtime
            .update_runtime_config(UpdateRuntimeConfigRequest {
                runtime_config: Some(RuntimeConfig {
                    network_config: Some(NetworkConfig {
                        pod_cidr: "10.244.7.0/24,fd00:7::/64".into(),
                    }),
                }),
            })
            .await
            .unwrap();
    }
    d.kill9();
    assert!(d.socket.exists(), "kill -9 leaves the socket file behind");
    d.spawn_and_wait_ready(); // replaces the stale socket, retakes the lock
    let mut c = d.client().await;
    let s = c
        .runtime
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let rc: serde_json::Value = serde_json::from_str(&s.info["runtimeConfig"]).unwrap();
    assert_eq!(
        rc["podCIDRs"],
        serde_json::json!(["10.244.7.0/24", "fd00:7::/64"])
    );
    let store: serde_json::Value = serde_json::from_str(&s.info["store"]).unwrap();
    assert_eq!(store["schemaVersion"], 1);
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_the_daemon_keeps_serving() {
    if !root_or_skip("bad_requests_get_clear_errors_and_the_daemon_keeps_serving") {
        return;
    }
    let d = Berthd::start("badreq");
    let mut c = d.client().await;
    let e = c
        .runtime
        .update_runtime_config(UpdateRuntimeConfigRequest {
            runtime_config: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("runtime_config is required"),
        "{}",
        e.message()
    );
    let e = c
        .runtime
        .update_runtime_config(UpdateRuntimeConfigRequest {
            runtime_config: Some(RuntimeConfig {
                network_config: Some(NetworkConfig {
                    pod_cidr: "10.0.0.0/33".into(),
                }),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("pod_cidr"), "{}", e.message());

    // A streaming call without its subject names the missing field.
    let e = c
        .runtime
        .port_forward(PortForwardRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("pod_sandbox_id"), "{}", e.message());
    // Capabilities that have not landed answer UNIMPLEMENTED, never a fake success.
    let e = c
        .runtime
        .checkpoint_container(CheckpointContainerRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(e.message().contains("CheckpointContainer"));
    let e = c
        .runtime
        .create_container(CreateContainerRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("config is required"),
        "{}",
        e.message()
    );
    let e = c
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("config is required"),
        "{}",
        e.message()
    );
    let e = c
        .image
        .pull_image(PullImageRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("image.image is required"),
        "{}",
        e.message()
    );

    c.runtime.version(VersionRequest::default()).await.unwrap();
}

#[tokio::test]
async fn readiness_is_signalled_only_once_the_socket_accepts_calls() {
    if !root_or_skip("readiness_is_signalled_only_once_the_socket_accepts_calls") {
        return;
    }
    let mut d = Berthd::builder("notify").prepare();
    let notify_path = d.dir.join("n.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut child = d
        .command()
        .env("NOTIFY_SOCKET", &notify_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("READY=1 within 20 s");
    assert_eq!(&buf[..n], b"READY=1");
    // At the moment of READY=1 a call succeeds.
    let mut c = berth_cli::client::connect(&d.socket, Duration::from_secs(2))
        .await
        .unwrap();
    c.runtime.version(VersionRequest::default()).await.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let n = notify.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(child.wait().unwrap().success());
    drop(c);
    fs::remove_file(&notify_path).unwrap();
    let _ = &mut d;
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    if !root_or_skip("json_logs_are_one_object_per_line") {
        return;
    }
    let mut d = Berthd::builder("jsonlog")
        .arg("--log-format")
        .arg("json")
        .start();
    d.stop();
    let log = d.log();
    let mut n = 0;
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
        n += 1;
    }
    assert!(log.contains("berthd ready") && n >= 3, "{log}");
}

#[tokio::test]
async fn bad_config_is_a_startup_error_naming_the_key() {
    if !root_or_skip("bad_config_is_a_startup_error_naming_the_key") {
        return;
    }
    let mut d = Berthd::builder("badcfg")
        .config("pod", "cgroup_driver", "\"cgroupfsx\"")
        .prepare();
    let (status, out) = d.run_expect_exit();
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("key `pod.cgroup_driver`"), "{out}");
    assert!(out.contains("unknown variant `cgroupfsx`"), "{out}");
    assert!(!d.socket.exists());

    let mut d = Berthd::builder("badkey")
        .config("daemon", "sockett", "\"/x\"")
        .prepare();
    let (status, out) = d.run_expect_exit();
    assert_eq!(status.code(), Some(1));
    assert!(out.contains("unknown field `sockett`"), "{out}");
}

#[tokio::test]
async fn unwritable_root_dir_is_a_clear_startup_error() {
    if !root_or_skip("unwritable_root_dir_is_a_clear_startup_error") {
        return;
    }
    let probe = Berthd::builder("rootro").prepare();
    // A read-only tmpfs: even root cannot write there.
    let ro = probe.dir.join("ro");
    fs::create_dir_all(&ro).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &ro,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_RDONLY,
        Some("size=1m"),
    )
    .unwrap();
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let guard = Unmount(ro.clone());
    let mut d = Berthd::builder("rootro2")
        .config(
            "daemon",
            "root_dir",
            &format!("{:?}", ro.join("berth").to_str().unwrap()),
        )
        .prepare();
    let (status, out) = d.run_expect_exit();
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("cannot create root dir"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    drop(guard);
    drop(probe);
}

#[tokio::test]
async fn socket_dir_is_created_and_a_foreign_file_is_not_replaced() {
    if !root_or_skip("socket_dir_is_created_and_a_foreign_file_is_not_replaced") {
        return;
    }
    let probe = Berthd::builder("sockdir").prepare();
    let sock = probe.dir.join("deep/er/b.sock");
    let mut d = Berthd::builder("sockdir2")
        .config("daemon", "socket", &format!("{:?}", sock.to_str().unwrap()))
        .start();
    assert!(sock.exists());
    let mut c = berth_cli::client::connect(&sock, Duration::from_secs(2))
        .await
        .unwrap();
    c.runtime.version(VersionRequest::default()).await.unwrap();
    assert!(d.stop().success());
    assert!(!sock.exists());

    fs::write(&sock, "not a socket").unwrap();
    let (status, out) = d.run_expect_exit();
    assert_eq!(status.code(), Some(1));
    assert!(out.contains("is not a socket"), "{out}");
    assert_eq!(fs::read_to_string(&sock).unwrap(), "not a socket");
    drop(probe);
}
