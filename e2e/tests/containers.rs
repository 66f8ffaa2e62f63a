//! Containers end to end, as root: real pods (Debian's CNI plugins on each
//! test's own bridge), images from a local registry, the real berth-shim,
//! and each OCI runtime handler (berth-runtime, runc) running the same
//! checks.
//!
//! Kept as one file past ~600 lines: the container RPCs on both handlers
//! share the Setup scene; crash and restart behaviour is in
//! container_recovery.rs, the escape in escape.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_e2e::fixture;
use berth_e2e::root_or_skip;
use berth_e2e::setup::{Setup, eventually, pod_config, setup, setup_with};
use k8s_cri::v1::*;
use tonic::Code;

/// Log lines split into (stream, tag, content), checking the timestamp.
fn log_lines(path: &Path) -> Vec<(String, String, String)> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| {
            let mut parts = l.splitn(4, ' ');
            let ts = parts.next().unwrap();
            assert!(
                ts.len() >= 20
                    && ts.as_bytes()[4] == b'-'
                    && ts.contains('T')
                    && (ts.ends_with('Z') || ts.contains('+')),
                "bad timestamp in {l:?}"
            );
            let stream = parts.next().unwrap().to_owned();
            let tag = parts.next().unwrap().to_owned();
            let content = parts.next().unwrap_or("").to_owned();
            (stream, tag, content)
        })
        .collect()
}

async fn lifecycle(tag: &str, handler: &'static str) {
    let mut s = setup(tag, handler, fixture::busybox()).await;

    // Output lands in the CRI log; exit code 3 is an Error.
    let id = s
        .run(
            "echo",
            &["sh", "-c", "echo out1; echo err1 >&2; echo out2; exit 3"],
        )
        .await;
    let st = s.wait_exited(&id, Duration::from_secs(20)).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (3, "Error"), "{st:?}");
    assert!(
        st.created_at > 0 && st.started_at >= st.created_at && st.finished_at >= st.started_at,
        "{st:?}"
    );
    assert_eq!(st.log_path, s.log_file("echo").display().to_string());
    assert_eq!(st.metadata.as_ref().unwrap().name, "echo");
    let lines = log_lines(&s.log_file("echo"));
    let want =
        |stream: &str, content: &str| (stream.to_owned(), "F".to_owned(), content.to_owned());
    assert!(lines.contains(&want("stdout", "out1")), "{lines:?}");
    assert!(lines.contains(&want("stderr", "err1")), "{lines:?}");
    assert!(lines.contains(&want("stdout", "out2")), "{lines:?}");
    let out1 = lines.iter().position(|l| l.2 == "out1").unwrap();
    let out2 = lines.iter().position(|l| l.2 == "out2").unwrap();
    assert!(out1 < out2);

    // Exit 0 is Completed; image id is the ImageService's.
    let id0 = s.run("ok", &["true"]).await;
    let st = s.wait_exited(&id0, Duration::from_secs(20)).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"));
    let img =
        s.c.image
            .image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: s.image.clone(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .image
            .unwrap();
    assert_eq!(st.image_id, img.id);
    assert!(st.image_ref.contains("sha256:"), "{}", st.image_ref);

    // Env, user, group, working dir and args as asked.
    let mut cfg = s.config("who", &["sh", "-c"]);
    cfg.args = vec![
        "echo \"$FOO $(id -u) $(id -g) $(pwd) $0\"; id -G".into(),
        "arg0".into(),
    ];
    cfg.working_dir = "/tmp".into();
    cfg.envs = vec![KeyValue {
        key: "FOO".into(),
        value: "bar".into(),
    }];
    cfg.linux.as_mut().unwrap().security_context = Some(LinuxContainerSecurityContext {
        run_as_user: Some(Int64Value { value: 1234 }),
        run_as_group: Some(Int64Value { value: 2345 }),
        supplemental_groups: vec![3456],
        ..Default::default()
    });
    let who = s.create(cfg).await.unwrap();
    s.start(&who).await;
    let st = s.wait_exited(&who, Duration::from_secs(20)).await;
    assert_eq!(st.exit_code, 0, "{st:?}");
    let user = st.user.unwrap().linux.unwrap();
    assert_eq!((user.uid, user.gid), (1234, 2345));
    assert!(user.supplemental_groups.contains(&3456), "{user:?}");
    let out: Vec<String> = log_lines(&s.log_file("who"))
        .into_iter()
        .map(|l| l.2)
        .collect();
    assert_eq!(out[0], "bar 1234 2345 /tmp arg0", "{out:?}");
    assert!(out[1].split(' ').any(|g| g == "3456"), "{out:?}");

    // A running container: ExecSync output, exit code and timeout.
    let cooperative = s
        .run(
            "coop",
            &[
                "sh",
                "-c",
                "trap 'exit 0' TERM; while :; do sleep 0.1; done",
            ],
        )
        .await;
    let r = s
        .exec(
            &cooperative,
            &["sh", "-c", "echo hi; echo oops >&2; exit 5"],
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        (r.stdout.as_slice(), r.stderr.as_slice(), r.exit_code),
        (&b"hi\n"[..], &b"oops\n"[..], 5)
    );
    // Signals as a fresh process has them: none blocked, none ignored
    // (SIGPIPE above all, which Rust ignores in the shim and the runtime;
    // 32 and 33 are glibc's, which it will not reset, passed on as is).
    let r = s
        .exec(&cooperative, &["grep", "^Sig[IB]", "/proc/self/status"], 10)
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout).into_owned();
    let mask = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
            .unwrap_or_else(|| panic!("{name} in {out}"))
    };
    assert_eq!(mask("SigBlk:"), 0, "{out}");
    assert_eq!(mask("SigIgn:") & 0x7fff_ffff, 0, "{out}");
    let t0 = Instant::now();
    let e = s.exec(&cooperative, &["sleep", "30"], 1).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(15));
    assert_eq!(
        s.status(&cooperative).await.state,
        ContainerState::ContainerRunning as i32
    );

    // Cooperative stop: SIGTERM, exits 0 well before the timeout.
    let t0 = Instant::now();
    s.stop(&cooperative, 30).await;
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let st = s.status(&cooperative).await;
    assert_eq!(
        (st.state, st.exit_code),
        (ContainerState::ContainerExited as i32, 0)
    );

    // A process ignoring SIGTERM: the timeout passes, then SIGKILL (137).
    let stubborn = s
        .run(
            "stubborn",
            &[
                "sh",
                "-c",
                "trap '' TERM; echo trapped; while :; do sleep 0.1; done",
            ],
        )
        .await;
    // SIGTERM must arrive after the trap, not to the runtime's init.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string(s.log_file("stubborn"))
        .unwrap_or_default()
        .contains("trapped")
    {
        assert!(Instant::now() < deadline, "stubborn never set its trap");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t0 = Instant::now();
    s.stop(&stubborn, 2).await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "{took:?}"
    );
    let st = s.status(&stubborn).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (137, "Error"), "{st:?}");
    // Stopping again is fine.
    s.stop(&stubborn, 2).await;

    // UpdateContainerResources reaches the live cgroup.
    let mut cfg = s.config("limited", &["sleep", "1000"]);
    cfg.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 64 << 20,
        ..Default::default()
    });
    let limited = s.create(cfg).await.unwrap();
    s.start(&limited).await;
    let cg_file = "/sys/fs/cgroup/memory/memory.limit_in_bytes";
    assert_eq!(
        s.sh(&limited, &format!("cat {cg_file}")).await,
        (0, (64u64 << 20).to_string())
    );
    s.c.runtime
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: limited.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: 32 << 20,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        s.sh(&limited, &format!("cat {cg_file}")).await,
        (0, (32u64 << 20).to_string())
    );
    let st = s.status(&limited).await;
    assert_eq!(
        st.resources.unwrap().linux.unwrap().memory_limit_in_bytes,
        32 << 20
    );

    // Remove a running container: killed, gone with its rootfs.
    s.remove(&limited).await;
    let e =
        s.c.runtime
            .container_status(ContainerStatusRequest {
                container_id: limited.clone(),
                verbose: false,
            })
            .await
            .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Its files go in the background, right after the reply.
    let dir = s.e.d.root_dir.join("containers").join(&limited);
    eventually("the removed container's directory goes", || !dir.exists()).await;
    // Removing again (unknown id) is fine.
    s.remove(&limited).await;

    // ListContainers filters.
    let all =
        s.c.runtime
            .list_containers(ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
    assert_eq!(all.len(), 5, "{all:?}");
    let running =
        s.c.runtime
            .list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    state: Some(ContainerStateValue {
                        state: ContainerState::ContainerRunning as i32,
                    }),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
    assert!(running.is_empty(), "{running:?}");
    assert_eq!(s.handler, handler);
    s.finish().await;
}

async fn isolation(tag: &str, handler: &'static str) {
    // Dynamic busybox: applets are real execs, so masked paths and
    // seccomp show as they would for any program.
    let mut s = setup(tag, handler, fixture::busybox_dynamic()).await;
    let mut cfg = s.config("a", &["sh", "-c", "mkdir -p /tmp/www && echo hello-from-a > /tmp/www/index.html && echo only-a > /tmp/a-only && exec httpd -f -p 8080 -h /tmp/www"]);
    cfg.linux.as_mut().unwrap().security_context = Some(LinuxContainerSecurityContext {
        seccomp: Some(SecurityProfile {
            profile_type: security_profile::ProfileType::RuntimeDefault as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    let a = s.create(cfg).await.unwrap();
    s.start(&a).await;
    let mut cfg = s.config("b", &["sleep", "1000"]);
    cfg.linux.as_mut().unwrap().security_context = Some(LinuxContainerSecurityContext {
        readonly_rootfs: true,
        seccomp: Some(SecurityProfile {
            profile_type: security_profile::ProfileType::RuntimeDefault as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    let b = s.create(cfg).await.unwrap();
    s.start(&b).await;

    // Shared localhost and IPC, separate filesystems.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, out) = s.sh(&b, "wget -q -O - http://127.0.0.1:8080/").await;
        if code == 0 {
            assert_eq!(out, "hello-from-a");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "b cannot reach a on localhost: {out}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ns = "for n in net ipc mnt uts; do readlink /proc/self/ns/$n; done";
    let (_, na) = s.sh(&a, ns).await;
    let (_, nb) = s.sh(&b, ns).await;
    let (na, nb): (Vec<&str>, Vec<&str>) = (na.lines().collect(), nb.lines().collect());
    assert_eq!(
        (na[0], na[1], na[3]),
        (nb[0], nb[1], nb[3]),
        "net, ipc, uts shared"
    );
    assert_ne!(na[2], nb[2], "mount namespaces differ");
    assert_eq!(s.sh(&a, "cat /tmp/a-only").await, (0, "only-a".into()));
    assert_ne!(s.sh(&b, "cat /tmp/a-only").await.0, 0);
    assert_eq!(s.sh(&b, "hostname").await, (0, "pod".into()));

    // Default-deny posture, observed from inside.
    let (code, out) = s.sh(&b, "touch /newfile").await;
    assert_ne!(code, 0, "read-only rootfs: {out}");
    let (code, out) = s
        .sh(&b, "mkdir -p /tmp/m; mount -t tmpfs none /tmp/m")
        .await;
    assert_ne!(code, 0, "mount without CAP_SYS_ADMIN: {out}");
    let (code, out) = s.sh(&a, "echo h > /proc/sysrq-trigger").await;
    assert_ne!(code, 0, "sysrq-trigger is read-only: {out}");
    let (code, out) = s.sh(&a, "wc -c < /proc/kcore").await;
    assert!(code != 0 || out.trim() == "0", "kcore masked: {out}");
    let (code, out) = s.sh(&a, "unshare -U true").await;
    assert_ne!(code, 0, "user namespaces denied by seccomp: {out}");
    let (_, caps) = s.sh(&a, "grep CapEff /proc/self/status").await;
    assert!(
        caps.ends_with("00000000a80425fb"),
        "default capability set: {caps}"
    );
    let (_, nnp) = s.sh(&a, "grep Seccomp: /proc/self/status").await;
    assert!(nnp.ends_with('2'), "seccomp filter mode: {nnp}");
    s.finish().await;
}

#[tokio::test]
async fn lifecycle_with_berth_runtime() {
    if !root_or_skip("lifecycle_with_berth_runtime") {
        return;
    }
    lifecycle("ctrlife", "berth").await;
}

#[tokio::test]
async fn lifecycle_with_runc() {
    if !root_or_skip("lifecycle_with_runc") {
        return;
    }
    lifecycle("ctrliferunc", "runc").await;
}

#[tokio::test]
async fn isolation_with_berth_runtime() {
    if !root_or_skip("isolation_with_berth_runtime") {
        return;
    }
    isolation("ctriso", "berth").await;
}

#[tokio::test]
async fn isolation_with_runc() {
    if !root_or_skip("isolation_with_runc") {
        return;
    }
    isolation("ctrisorunc", "runc").await;
}

#[tokio::test]
async fn oom_kills_are_reported() {
    if !root_or_skip("oom_kills_are_reported") {
        return;
    }
    oom("ctroom", "berth").await;
}

#[tokio::test]
async fn oom_kills_are_reported_with_runc() {
    if !root_or_skip("oom_kills_are_reported_with_runc") {
        return;
    }
    oom("ctroomrunc", "runc").await;
}

async fn oom(tag: &str, handler: &'static str) {
    let mut s = setup(tag, handler, fixture::busybox()).await;
    let mut cfg = s.config("hog", &["sh", "-c", "head -c 200000000 /dev/zero | tail"]);
    cfg.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 16 << 20,
        memory_swap_limit_in_bytes: 16 << 20,
        ..Default::default()
    });
    let id = s.create(cfg).await.unwrap();
    s.start(&id).await;
    let st = s.wait_exited(&id, Duration::from_secs(30)).await;
    assert_eq!(
        (st.exit_code, st.reason.as_str()),
        (137, "OOMKilled"),
        "{st:?}"
    );
    s.finish().await;
}

/// A container with `tty: true` gets a terminal (the runtime's console
/// socket): its output, stderr included, is logged as stdout; exec works.
#[tokio::test]
async fn tty_containers_get_a_terminal() {
    if !root_or_skip("tty_containers_get_a_terminal") {
        return;
    }
    for (tag, handler) in [("ctrtty", "berth"), ("ctrttyrunc", "runc")] {
        let mut s = setup(tag, handler, fixture::busybox()).await;
        let mut cfg = s.config(
            "term",
            &[
                "sh",
                "-c",
                "[ -t 1 ] && echo stdout-is-a-tty; tty; echo to-stderr >&2; sleep 1000",
            ],
        );
        cfg.tty = true;
        let id = s
            .create(cfg)
            .await
            .unwrap_or_else(|e| panic!("{handler}: {e:?}\n{}", s.e.d.log()));
        s.start(&id).await;
        let log = s.log_file("term");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines = if log.exists() {
                log_lines(&log)
            } else {
                Vec::new()
            };
            let has = |text: &str| {
                lines
                    .iter()
                    .any(|(stream, _, rest)| stream == "stdout" && rest.contains(text))
            };
            if has("stdout-is-a-tty") && has("/dev/pts/") && has("to-stderr") {
                assert!(
                    lines.iter().all(|(stream, _, _)| stream == "stdout"),
                    "{lines:?}"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{handler}: tty output not logged: {lines:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            s.sh(&id, "echo in-exec").await,
            (0, "in-exec".into()),
            "{handler}"
        );
        s.stop(&id, 0).await;
        assert_eq!(s.status(&id).await.exit_code, 137, "{handler}");
        s.finish().await;
    }
}

/// `[runtime] default_rlimits` reach the container's processes and its
/// exec processes, on both handlers.
#[tokio::test]
async fn configured_rlimits_apply_to_containers() {
    if !root_or_skip("configured_rlimits_apply_to_containers") {
        return;
    }
    for (tag, handler) in [("ctrrlim", "berth"), ("ctrrlimrunc", "runc")] {
        let mut s = setup_with(tag, handler, fixture::busybox(), |b| {
            b.config(
                "runtime",
                "default_rlimits",
                r#"["nofile=1234:2345", "core=0"]"#,
            )
        })
        .await;
        let id = s.run("limited", &["sleep", "1000"]).await;
        let (code, limits) = s.sh(&id, "cat /proc/1/limits").await;
        assert_eq!(code, 0);
        let line = |name: &str| -> Vec<String> {
            limits
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} in {limits}"))
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(line("Max open files")[3..5], ["1234", "2345"], "{handler}");
        assert_eq!(line("Max core file size")[4..6], ["0", "0"], "{handler}");
        // An exec process has them too. (runc 1.1.5, Debian 12's, leaks the
        // soft nofile limit its Go runtime raises into exec processes, a
        // runc bug fixed in later releases: only the hard limit is checked
        // there.)
        assert_eq!(
            s.sh(&id, "ulimit -Hn").await,
            (0, "2345".into()),
            "{handler}"
        );
        if handler == "berth" {
            assert_eq!(s.sh(&id, "ulimit -n").await, (0, "1234".into()));
        }
        s.finish().await;
    }
}

#[tokio::test]
async fn bad_container_requests_get_specific_errors() {
    if !root_or_skip("bad_container_requests_get_specific_errors") {
        return;
    }
    let mut s = setup("ctrbad", "berth", fixture::busybox()).await;
    let ok = s.config("c", &["sleep", "1000"]);
    let code = |r: Result<String, tonic::Status>| r.unwrap_err().code();

    assert_eq!(
        code(s.create_in("nosuchpod", ok.clone()).await),
        Code::NotFound
    );
    let mut cfg = ok.clone();
    cfg.image.as_mut().unwrap().image = "127.0.0.1:1/nope:v1".into();
    assert_eq!(code(s.create(cfg).await), Code::NotFound);
    let mut cfg = ok.clone();
    cfg.mounts = vec![Mount {
        container_path: "/data".into(),
        host_path: "/nonexistent/berth/source".into(),
        ..Default::default()
    }];
    assert_eq!(code(s.create(cfg).await), Code::InvalidArgument);
    let mut cfg = ok.clone();
    cfg.linux.as_mut().unwrap().security_context = Some(LinuxContainerSecurityContext {
        seccomp: Some(SecurityProfile {
            profile_type: security_profile::ProfileType::Localhost as i32,
            localhost_ref: "/nonexistent/profile.json".into(),
        }),
        ..Default::default()
    });
    assert_eq!(code(s.create(cfg).await), Code::InvalidArgument);
    let mut cfg = ok.clone();
    cfg.devices = vec![Device {
        container_path: "/dev/x".into(),
        host_path: "/nonexistent/dev".into(),
        permissions: "rwm".into(),
    }];
    assert_eq!(code(s.create(cfg).await), Code::InvalidArgument);
    let mut cfg = ok.clone();
    cfg.log_path = "../../escape.log".into();
    assert_eq!(code(s.create(cfg).await), Code::InvalidArgument);
    let mut cfg = ok.clone();
    cfg.metadata = None;
    assert_eq!(code(s.create(cfg).await), Code::InvalidArgument);

    // Nothing of the failures is left.
    let dirs: Vec<_> = fs::read_dir(s.e.d.root_dir.join("containers"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(dirs.is_empty(), "{dirs:?}");

    // Duplicate names in a pod.
    let first = s.create(ok.clone()).await.unwrap();
    assert_eq!(code(s.create(ok.clone()).await), Code::AlreadyExists);
    // Exec in a container that is not running.
    let e = s.exec(&first, &["true"], 5).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    // Unknown container ids.
    let e = s.exec("nosuchcontainer", &["true"], 5).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Stop, like Remove, is idempotent: an unknown or removed container
    // is stopped already.
    s.stop("nosuchcontainer", 0).await;
    let gone = s.run("gone", &["sleep", "1000"]).await;
    s.remove(&gone).await;
    s.stop(&gone, 0).await;

    // A pod that is not ready takes no containers.
    s.c.runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: s.pod.clone(),
        })
        .await
        .unwrap();
    let mut cfg = ok.clone();
    cfg.metadata.as_mut().unwrap().name = "late".into();
    assert_eq!(code(s.create(cfg).await), Code::FailedPrecondition);
    s.finish().await;
}

#[tokio::test]
async fn containers_of_a_pod_can_share_its_pid_namespace() {
    if !root_or_skip("containers_of_a_pod_can_share_its_pid_namespace") {
        return;
    }
    shared_pidns("ctrpidns", "berth").await;
}

#[tokio::test]
async fn containers_of_a_pod_can_share_its_pid_namespace_with_runc() {
    if !root_or_skip("containers_of_a_pod_can_share_its_pid_namespace_with_runc") {
        return;
    }
    shared_pidns("ctrpidnsrunc", "runc").await;
}

async fn shared_pidns(tag: &str, handler: &'static str) {
    let mut s = setup(tag, handler, fixture::busybox()).await;
    let mut cfg = pod_config("shared", &s.e.d.dir.join("logs/pod"));
    cfg.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .pid = NamespaceMode::Pod as i32;
    let pod =
        s.c.runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(cfg),
                runtime_handler: handler.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
    let mk = |s: &Setup, name: &str, cmd: &[&str]| s.config(name, cmd);
    let a = s
        .create_in(&pod, mk(&s, "a", &["sh", "-c", "exec sleep 1001"]))
        .await
        .unwrap();
    s.start(&a).await;
    let b = s
        .create_in(&pod, mk(&s, "b", &["sleep", "1002"]))
        .await
        .unwrap();
    s.start(&b).await;
    // pid 1 is the pod's holder; b sees a's process.
    let (_, init) = s.sh(&b, "tr '\\0' ' ' < /proc/1/cmdline").await;
    assert!(init.contains("pause") && init.contains(&pod), "{init}");
    let (_, ps) = s.sh(&b, "ps -o args").await;
    assert!(
        ps.contains("sleep 1001") && ps.contains("sleep 1002"),
        "{ps}"
    );
    // Stopping the pod kills the holder and with it the namespace.
    let holder_pids: Vec<String> = fs::read_to_string(
        s.e.d
            .pod_cgroup("/sys/fs/cgroup/pids", &pod)
            .join("cgroup.procs"),
    )
    .unwrap_or_default()
    .lines()
    .map(str::to_owned)
    .collect();
    assert!(!holder_pids.is_empty());
    s.c.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    for p in holder_pids {
        let alive = fs::read_to_string(format!("/proc/{p}/status"))
            .map(|st| !st.contains("State:\tZ"))
            .unwrap_or(false);
        assert!(!alive, "process {p} of the pod still runs");
    }
    s.finish().await;
}

#[tokio::test]
async fn a_removed_image_keeps_the_snapshots_its_containers_use() {
    if !root_or_skip("a_removed_image_keeps_the_snapshots_its_containers_use") {
        return;
    }
    let mut s = setup("ctrlease", "berth", fixture::busybox()).await;
    let snapshots = |s: &Setup| -> Vec<PathBuf> {
        fs::read_dir(s.e.d.root_dir.join("snapshots"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = snapshots(&s);
    assert!(!before.is_empty());
    let id = s.run("user", &["sleep", "1000"]).await;
    // Removing a container of a present image does not touch its snapshots.
    let other = s.run("other", &["sleep", "1000"]).await;
    s.remove(&other).await;
    assert_eq!(snapshots(&s), before);
    // The image goes; its snapshots stay while a container runs on them.
    let image = s.image.clone();
    s.c.image
        .remove_image(RemoveImageRequest {
            image: Some(ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let listed =
        s.c.image
            .list_images(ListImagesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .images;
    assert!(listed.is_empty(), "{listed:?}");
    assert_eq!(snapshots(&s), before);
    assert_eq!(s.sh(&id, "echo still-here").await, (0, "still-here".into()));
    // Removing the container releases them for collection.
    s.remove(&id).await;
    eventually("the snapshots are collected", || snapshots(&s).is_empty()).await;
    s.finish().await;
}

/// Unmounts what a test mounted on the host, also when it fails.
struct HostMounts(Vec<PathBuf>);

impl Drop for HostMounts {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

#[tokio::test]
async fn host_mounts_propagate_into_containers() {
    if !root_or_skip("host_mounts_propagate_into_containers") {
        return;
    }
    propagation("ctrprop", "berth").await;
}

#[tokio::test]
async fn host_mounts_propagate_into_containers_with_runc() {
    if !root_or_skip("host_mounts_propagate_into_containers_with_runc") {
        return;
    }
    propagation("ctroprunc", "runc").await;
}

/// HostToContainer (rslave) and private volumes of a host directory on a
/// shared mount: a mount made on the host after the container started
/// shows through the first only. libcontainer's create failed on the
/// `rslave` rootfs propagation such a volume needs, and its parser
/// dropped a mount's own propagation option.
async fn propagation(tag: &str, handler: &'static str) {
    use nix::mount::{MsFlags, mount};
    let mut s = setup(tag, handler, fixture::busybox()).await;
    let host = s.e.d.dir.join("propagation");
    fs::create_dir_all(&host).unwrap();
    let mut mounts = HostMounts(Vec::new());
    mount(
        Some(&host),
        &host,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    mounts.0.push(host.clone());
    mount(
        None::<&str>,
        &host,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .unwrap();
    let mut cfg = s.config("prop", &["sleep", "1000"]);
    for (path, propagation) in [
        ("/slave", MountPropagation::PropagationHostToContainer),
        ("/private", MountPropagation::PropagationPrivate),
    ] {
        cfg.mounts.push(Mount {
            container_path: path.into(),
            host_path: host.to_str().unwrap().into(),
            propagation: propagation as i32,
            ..Default::default()
        });
    }
    let id = s
        .create(cfg)
        .await
        .unwrap_or_else(|e| panic!("create: {e:?}\n{}", s.e.d.log()));
    s.start(&id).await;
    let sub = host.join("sub");
    fs::create_dir_all(&sub).unwrap();
    mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    mounts.0.push(sub.clone());
    fs::write(sub.join("marker"), "from the host").unwrap();
    let (code, out) = s.sh(&id, "cat /slave/sub/marker").await;
    assert_eq!((code, out.as_str()), (0, "from the host"));
    let (code, _) = s.sh(&id, "cat /private/sub/marker").await;
    assert_ne!(code, 0, "a private volume saw a later host mount");
    // Host mounts go first: the daemon's check finds nothing left then.
    drop(mounts);
    s.finish().await;
}

/// A CreateContainer whose copy of the sandbox config claims more than the
/// pod was created with gains nothing: privilege and sysctls come from the
/// pod as RunPodSandbox received it.
#[tokio::test]
async fn a_forged_sandbox_config_gains_nothing() {
    if !root_or_skip("a_forged_sandbox_config_gains_nothing") {
        return;
    }
    let mut s = setup("forgedsb", "berth", fixture::busybox()).await;
    let mut forged = s.pod_config.clone();
    let linux = forged.linux.get_or_insert_default();
    linux
        .sysctls
        .insert("kernel.shm_rmid_forced".into(), "1".into());
    linux.security_context.get_or_insert_default().privileged = true;
    let create =
        |c: &mut berth_cli::client::CriClient, cfg: ContainerConfig, sb: PodSandboxConfig| {
            let pod = s.pod.clone();
            let mut c = c.clone();
            async move {
                c.runtime
                    .create_container(CreateContainerRequest {
                        pod_sandbox_id: pod,
                        config: Some(cfg),
                        sandbox_config: Some(sb),
                    })
                    .await
                    .map(|r| r.into_inner().container_id)
            }
        };
    // A privileged container in a pod that is not: refused.
    let mut cfg = s.config("priv", &["sleep", "1000"]);
    cfg.linux
        .get_or_insert_default()
        .security_context
        .get_or_insert_default()
        .privileged = true;
    let e = create(&mut s.c, cfg, forged.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // The forged sysctl is not applied.
    let cfg = s.config("plain", &["sleep", "1000"]);
    let id = create(&mut s.c, cfg, forged).await.unwrap();
    s.start(&id).await;
    let (_, v) = s.sh(&id, "cat /proc/sys/kernel/shm_rmid_forced").await;
    assert_eq!(v, "0");
    s.finish().await;
}

/// berth's own root and state directories may be mounted into a container
/// that is not privileged read-only only (a container wrote into berth's
/// store through such a mount).
#[tokio::test]
async fn berths_own_dirs_mount_read_only_only() {
    if !root_or_skip("berths_own_dirs_mount_read_only_only") {
        return;
    }
    let mut s = setup("owndirs", "berth", fixture::busybox()).await;
    for (i, dir) in [s.e.d.root_dir.clone(), s.e.d.state_dir.clone()]
        .into_iter()
        .enumerate()
    {
        let mount = |readonly| Mount {
            container_path: "/berth".into(),
            host_path: dir.display().to_string(),
            readonly,
            ..Default::default()
        };
        let mut cfg = s.config(&format!("rw{i}"), &["sleep", "1000"]);
        cfg.mounts.push(mount(false));
        let e = s.create(cfg).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("read-only"), "{e:?}");
        let mut cfg = s.config(&format!("ro{i}"), &["sleep", "1000"]);
        cfg.mounts.push(mount(true));
        let id = s.create(cfg).await.unwrap();
        s.start(&id).await;
        let (code, _) = s.sh(&id, "touch /berth/x").await;
        assert_ne!(code, 0, "wrote into a read-only mount of {}", dir.display());
    }
    s.finish().await;
}

/// `[runtime] default_pids_limit` caps each container's pids: a fork bomb
/// in a container without a pod-level limit stops at it; on both handlers.
#[tokio::test]
async fn a_fork_bomb_stops_at_the_pids_limit() {
    if !root_or_skip("a_fork_bomb_stops_at_the_pids_limit") {
        return;
    }
    for (tag, handler) in [("ctrpids", "berth"), ("ctrpidsrunc", "runc")] {
        let mut s = setup_with(tag, handler, fixture::busybox(), |b| {
            b.config("runtime", "default_pids_limit", "32")
        })
        .await;
        let id = s.run("bomb", &["sleep", "1000"]).await;
        // A fork loop, exec'd in the container: it dies when fork fails.
        let r = s
            .exec(
                &id,
                &[
                    "sh",
                    "-c",
                    "i=0; while [ $i -lt 1000 ]; do sleep 1000 >/dev/null 2>&1 & i=$((i+1)); done",
                ],
                20,
            )
            .await
            .unwrap();
        assert_ne!(r.exit_code, 0, "{handler}: 1000 forks went through");
        assert!(
            String::from_utf8_lossy(&r.stderr).contains("can't fork"),
            "{handler}: {r:?}"
        );
        let cgroup = s.e.d.pod_cgroup("/sys/fs/cgroup/pids", &s.pod).join(&id);
        let current: u32 = std::fs::read_to_string(cgroup.join("pids.current"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(current <= 32, "{handler}: {current} pids");
        assert_eq!(
            s.status(&id).await.state,
            ContainerState::ContainerRunning as i32
        );
        let pids_max = std::fs::read_to_string(cgroup.join("pids.max")).unwrap();
        assert_eq!(pids_max.trim(), "32", "{handler}");
        s.finish().await;
    }
}

/// Recursive read-only mounts (`recursive_read_only`, the runtime's
/// `rro`): a read-only volume whose host directory has a mount inside is
/// read-only all the way down, where a plain read-only bind leaves the
/// inner mount writable; on both handlers, and Status says so.
#[tokio::test]
async fn recursive_read_only_mounts_reach_inner_mounts() {
    if !root_or_skip("recursive_read_only_mounts_reach_inner_mounts") {
        return;
    }
    use nix::mount::{MsFlags, mount};
    for (tag, handler) in [("ctrrro", "berth"), ("ctrrrorunc", "runc")] {
        let mut s = setup(tag, handler, fixture::busybox()).await;
        let st =
            s.c.runtime
                .status(StatusRequest { verbose: false })
                .await
                .unwrap()
                .into_inner();
        assert!(st.features.unwrap().supplemental_groups_policy);
        let h = st
            .runtime_handlers
            .iter()
            .find(|h| h.name == handler)
            .unwrap_or_else(|| panic!("{handler} in {:?}", st.runtime_handlers));
        let f = h.features.unwrap();
        assert!(f.recursive_read_only_mounts, "{handler}");
        // berth-runtime joins user namespaces; runc when its features say
        // so (userns.rs tests them).
        let runc_userns = std::process::Command::new("runc")
            .arg("features")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("\"user\""));
        assert_eq!(
            f.user_namespaces,
            handler == "berth" || runc_userns,
            "{handler}"
        );
        let vol = s.e.d.dir.join("rrovol");
        fs::create_dir_all(vol.join("sub")).unwrap();
        mount(
            Some("tmpfs"),
            &vol.join("sub"),
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=64k"),
        )
        .unwrap();
        let mounts = HostMounts(vec![vol.join("sub")]);
        let mut cfg = s.config("rro", &["sleep", "1000"]);
        for (path, rro) in [("/plain", false), ("/rro", true)] {
            cfg.mounts.push(Mount {
                container_path: path.into(),
                host_path: vol.to_str().unwrap().into(),
                readonly: true,
                recursive_read_only: rro,
                propagation: MountPropagation::PropagationPrivate as i32,
                ..Default::default()
            });
        }
        let id = s
            .create(cfg)
            .await
            .unwrap_or_else(|e| panic!("{handler}: {e:?}"));
        s.start(&id).await;
        let (plain, _) = s.sh(&id, "touch /plain/sub/x").await;
        assert_eq!(plain, 0, "{handler}: a plain read-only bind's inner mount");
        let (rro, out) = s.sh(&id, "touch /rro/sub/y").await;
        assert_ne!(rro, 0, "{handler}: wrote under a recursive read-only mount");
        assert!(out.contains("Read-only"), "{handler}: {out}");
        s.remove(&id).await;
        drop(mounts);
        s.finish().await;
    }
}

/// A container log path in directories of the pod's log directory that do
/// not exist yet: they are made (as containerd does), and the log written.
#[tokio::test]
async fn missing_log_directories_are_made() {
    if !root_or_skip("missing_log_directories_are_made") {
        return;
    }
    let mut s = setup("ctrlogdirs", "berth", fixture::busybox()).await;
    let mut cfg = s.config("nested", &["sh", "-c", "echo hello; exec sleep 1000"]);
    cfg.log_path = "app/0/nested.log".into();
    let id = s.create(cfg).await.unwrap();
    s.start(&id).await;
    let log = s.e.d.dir.join("logs/pod/app/0/nested.log");
    eventually("the log is written", || {
        fs::read_to_string(&log).is_ok_and(|t| t.contains("hello"))
    })
    .await;
    s.finish().await;
}
