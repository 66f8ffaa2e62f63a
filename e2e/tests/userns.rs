//! Pods with a user namespace of their own (`userns_options.mode = POD`,
//! Kubernetes' `hostUsers: false`), end to end, as root, on each handler
//! that claims them: the mapping seen from inside, the ownership of the
//! image, of idmapped and plain volumes and of berth's pod files, what the
//! pod's root can no longer do to the host, and the requests berth must
//! refuse (the CRI's forbidden mappings, a handler without user
//! namespaces).
//!
//! Each test maps its pods to a host range no other test uses.
//!
//! Kept as one file past ~600 lines: every test here shares the host
//! ranges, the pod and mount builders and one subject.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use berth_e2e::fixture;
use berth_e2e::root_or_skip;
use berth_e2e::setup::{Setup, pod_config, setup_with};
use k8s_cri::v1::*;
use tonic::Code;

/// Host ranges of this file's pods (kubelet allocates multiples of 65536
/// above the host's own 0-65535).
const BASE_BERTH: u32 = 65536 * 3000;
const BASE_RUNC: u32 = 65536 * 3001;
const BASE_REFUSED: u32 = 65536 * 3002;
const LEN: u32 = 65536;

fn ids(base: u32) -> Vec<IdMapping> {
    vec![IdMapping {
        host_id: base,
        container_id: 0,
        length: LEN,
    }]
}

fn userns(base: u32) -> UserNamespace {
    UserNamespace {
        mode: NamespaceMode::Pod as i32,
        uids: ids(base),
        gids: ids(base),
    }
}

/// A pod config (own network, IPC, PID per container) with `u`.
fn userns_pod(name: &str, log_dir: &Path, u: UserNamespace) -> PodSandboxConfig {
    let mut c = pod_config(name, log_dir);
    c.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .userns_options = Some(u);
    c
}

/// What `runc features` says of user namespaces.
fn runc_lists_userns() -> bool {
    let out = std::process::Command::new("runc")
        .arg("features")
        .output()
        .unwrap();
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    f.pointer("/linux/namespaces")
        .and_then(|n| n.as_array())
        .is_some_and(|n| n.iter().any(|v| v == "user"))
}

/// `berth exec -t` of `script` in `id`, run under a pseudo-terminal of
/// its own (util-linux `script`); what the terminal showed.
fn exec_with_terminal(s: &Setup, id: &str, script: &str) -> String {
    let cmd = format!(
        "{} -r unix://{} exec -t {id} -- sh -c '{script}'",
        berth_e2e::bin_path("berth").display(),
        s.e.d.socket.display()
    );
    let out = std::process::Command::new("timeout")
        .args(["60", "script", "-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("util-linux script");
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(
        out.status.success(),
        "{cmd}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

async fn run_pod(
    s: &mut Setup,
    config: PodSandboxConfig,
    handler: &str,
) -> Result<String, tonic::Status> {
    s.c.runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: handler.into(),
        })
        .await
        .map(|r| r.into_inner().pod_sandbox_id)
}

async fn remove_pod(s: &mut Setup, id: &str) {
    s.c.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .unwrap();
}

/// The host side of the volumes: `vol` (mounted idmapped) holding a file
/// of the host's root, `plain` (mounted as it is), `hostonly` holding a
/// file only the host's root may read.
struct HostDirs {
    vol: std::path::PathBuf,
    plain: std::path::PathBuf,
    hostonly: std::path::PathBuf,
}

impl HostDirs {
    fn make(base: &Path) -> HostDirs {
        let d = HostDirs {
            vol: base.join("vol"),
            plain: base.join("plain"),
            hostonly: base.join("hostonly"),
        };
        for dir in [&d.vol, &d.plain, &d.hostonly] {
            fs::create_dir_all(dir).unwrap();
        }
        for dir in [&d.vol, &d.plain] {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
        }
        fs::write(d.vol.join("from-host"), "host file\n").unwrap();
        let secret = d.hostonly.join("secret");
        fs::write(&secret, "host secret\n").unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
        d
    }

    fn owner(&self, p: &Path) -> (u32, u32) {
        let m = fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        (m.uid(), m.gid())
    }
}

fn mount(host: &Path, at: &str, idmap: Option<u32>) -> Mount {
    Mount {
        container_path: at.into(),
        host_path: host.display().to_string(),
        uid_mappings: idmap.map(ids).unwrap_or_default(),
        gid_mappings: idmap.map(ids).unwrap_or_default(),
        ..Default::default()
    }
}

async fn a_pod_in_its_own_user_namespace(tag: &str, handler: &'static str, base: u32) {
    let mut s = setup_with(tag, handler, fixture::busybox(), |b| b).await;
    let dirs = HostDirs::make(&s.e.d.dir.join("host"));
    let log_dir = s.e.d.dir.join("logs").join("pod");
    let host_name = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let pod = run_pod(&mut s, userns_pod("upod", &log_dir, userns(base)), handler)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", s.e.d.log()));

    // The pod's status reports its mapping back.
    let st =
        s.c.runtime
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
    let reported = st.linux.unwrap().namespaces.unwrap().options.unwrap();
    assert_eq!(reported.userns_options, Some(userns(base)));

    let container = |s: &Setup, name: &str, cmd: &[&str], uid: Option<i64>| {
        let mut c = s.config(name, cmd);
        c.mounts = vec![
            mount(&dirs.vol, "/vol", Some(base)),
            mount(&dirs.plain, "/plain", None),
            mount(&dirs.hostonly, "/hostonly", None),
        ];
        c.linux.as_mut().unwrap().security_context = Some(LinuxContainerSecurityContext {
            namespace_options: Some(NamespaceOption {
                pid: NamespaceMode::Container as i32,
                userns_options: Some(userns(base)),
                ..Default::default()
            }),
            // Granted, and still nothing over the host: capabilities
            // count in the pod's user namespace only.
            capabilities: Some(Capability {
                add_capabilities: vec!["SYS_MODULE".into(), "SYS_ADMIN".into(), "MKNOD".into()],
                ..Default::default()
            }),
            run_as_user: uid.map(|value| Int64Value { value }),
            ..Default::default()
        });
        c
    };
    let cfg = container(
        &s,
        "root",
        &["sh", "-c", "echo logged from the pod; exec sleep 1000"],
        None,
    );
    let root = s
        .create_in(&pod, cfg)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", s.e.d.log()));
    s.start(&root).await;

    // The mapping, from inside.
    let (code, map) = s
        .sh(&root, "cat /proc/self/uid_map /proc/self/gid_map")
        .await;
    assert_eq!(code, 0, "{map}");
    let lines: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let want = vec!["0".to_string(), base.to_string(), LEN.to_string()];
    assert_eq!(lines.len(), 2, "{map}");
    for l in &lines {
        assert_eq!(*l, want, "{map}");
    }
    assert_eq!(s.sh(&root, "id -u; id -g").await, (0, "0\n0".into()));

    // An exec with a terminal (kubectl exec -it) runs in the user
    // namespace too, its pty one of the container's.
    let out = exec_with_terminal(&s, &root, "tty; id -u; cat /proc/self/uid_map");
    assert!(out.contains("/dev/pts/"), "{out}");
    let words: Vec<&str> = out.split_whitespace().collect();
    assert!(
        words
            .windows(4)
            .any(|w| w == ["0", "0", &base.to_string(), &LEN.to_string()]),
        "{out}"
    );

    // The image's root-owned files are root's inside (idmapped layers),
    // and what the pod writes to its rootfs stays its own.
    assert_eq!(
        s.sh(&root, "stat -c %u:%g / /bin /etc/passwd").await,
        (0, "0:0\n0:0\n0:0".into())
    );
    assert_eq!(
        s.sh(&root, "echo mine > /etc/new && stat -c %u /etc/new")
            .await,
        (0, "0".into())
    );

    // berth's files for the pod: its root's, readable and writable.
    let (code, out) = s
        .sh(&root, "stat -c %u:%g /etc/hosts /etc/resolv.conf /etc/hostname /dev/shm && grep -c upod /etc/hosts && touch /dev/shm/x && echo ok")
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("0:0\n0:0\n0:0\n0:0\n"), "{out}");
    assert!(out.ends_with("ok"), "{out}");

    // /proc, /sys and /dev work; masked and read-only paths stay so.
    let (code, out) = s
        .sh(
            &root,
            "ls /sys/class/net && head -c 1 /dev/zero | wc -c && wc -c < /proc/keys",
        )
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("eth0") && out.contains("lo"), "{out}");
    assert!(out.ends_with("1\n0"), "{out}");
    let (code, out) = s.sh(&root, "echo 1 > /proc/sys/kernel/domainname").await;
    assert_ne!(code, 0, "/proc/sys is read-only: {out}");

    // Capabilities are the pod's: CAP_SYS_MODULE and CAP_MKNOD are there,
    // and what needs them over the host is refused. A module load is
    // refused by the capability check before the file is read (the host's
    // root would get "invalid module format"), on a kernel with modules;
    // a device node is refused to root of any user namespace but the
    // host's (a container's root makes them with CAP_MKNOD).
    let (_, caps) = s.sh(&root, "grep CapEff /proc/self/status").await;
    let eff = u64::from_str_radix(caps.split_whitespace().last().unwrap(), 16).unwrap();
    assert!(
        eff & (1 << 16) != 0 && eff & (1 << 21) != 0 && eff & (1 << 27) != 0,
        "SYS_MODULE, SYS_ADMIN, MKNOD: {caps}"
    );
    let (code, out) = s
        .sh(&root, "echo junk > /tmp/m.ko && insmod /tmp/m.ko")
        .await;
    assert_ne!(code, 0, "{out}");
    if Path::new("/proc/modules").exists() {
        assert!(out.contains("not permitted"), "{out}");
    }
    let (code, out) = s.sh(&root, "mknod /tmp/mem c 1 1").await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("not permitted"), "{out}");

    // sethostname changes the pod's UTS namespace only.
    assert_eq!(
        s.sh(&root, "hostname changed-inside && hostname").await,
        (0, "changed-inside".into())
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_name
    );

    // A host-only file through a plain volume: the host's root is nobody
    // here, and its 0600 file neither readable nor writable.
    let (code, out) = s.sh(&root, "cat /hostonly/secret").await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("denied"), "{out}");
    let (code, out) = s.sh(&root, "echo x >> /hostonly/secret").await;
    assert_ne!(code, 0, "{out}");
    assert_eq!(
        fs::read_to_string(dirs.hostonly.join("secret")).unwrap(),
        "host secret\n"
    );
    assert_eq!(
        s.sh(&root, "stat -c %u /hostonly/secret").await,
        (0, "65534".into())
    );

    // The idmapped volume: the host's root-owned file is the pod root's,
    // and the ids written are the pod's own ids on disk (the idmapped
    // mount undoes the user namespace's shift, as Kubernetes means it:
    // a volume keeps its ownership whatever range a pod gets).
    assert_eq!(
        s.sh(&root, "stat -c %u:%g /vol/from-host && cat /vol/from-host")
            .await,
        (0, "0:0\nhost file".into())
    );
    assert_eq!(s.sh(&root, "echo hi > /vol/by-root").await.0, 0);
    assert_eq!(dirs.owner(&dirs.vol.join("by-root")), (0, 0));
    // A plain volume: what the pod's root writes is the pod's host ids.
    assert_eq!(s.sh(&root, "echo hi > /plain/by-root").await.0, 0);
    assert_eq!(dirs.owner(&dirs.plain.join("by-root")), (base, base));

    // runAsUser 1000 inside: host uid base+1000, as files show.
    let cfg = container(
        &s,
        "user1000",
        &[
            "sh",
            "-c",
            "id -u > /plain/id; echo x > /vol/by-1000; echo x > /plain/by-1000; exec sleep 1000",
        ],
        Some(1000),
    );
    let u = s.create_in(&pod, cfg).await.unwrap();
    s.start(&u).await;
    berth_e2e::setup::eventually("the uid-1000 container's files", || {
        dirs.plain.join("by-1000").exists() && dirs.vol.join("by-1000").exists()
    })
    .await;
    assert_eq!(fs::read_to_string(dirs.plain.join("id")).unwrap(), "1000\n");
    // (Its group is whatever berth-spec resolved; the same shift shows.)
    let (plain_uid, plain_gid) = dirs.owner(&dirs.plain.join("by-1000"));
    let (vol_uid, vol_gid) = dirs.owner(&dirs.vol.join("by-1000"));
    assert_eq!((plain_uid, vol_uid), (base + 1000, 1000));
    assert_eq!(plain_gid, base + vol_gid, "{plain_gid} {vol_gid}");
    let init = s.init_pid(&u).await;
    let status = fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().nth(1),
        Some((base + 1000).to_string().as_str()),
        "{uid_line}"
    );

    // The log is written by the shim on the host's side.
    berth_e2e::setup::eventually("the container's log", || {
        fs::read_to_string(log_dir.join("root.log"))
            .is_ok_and(|l| l.contains("logged from the pod"))
    })
    .await;

    // A container whose user namespace disagrees with its pod's.
    let mut cfg = container(&s, "other", &["true"], None);
    cfg.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .userns_options = Some(userns(base + LEN));
    let e = s.create_in(&pod, cfg).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("agree with its pod"), "{e:?}");

    for c in [&root, &u] {
        s.stop(c, 0).await;
        s.remove(c).await;
    }
    remove_pod(&mut s, &pod).await;
    s.finish().await;
}

#[tokio::test]
async fn a_pod_in_its_own_user_namespace_with_berth_runtime() {
    if !root_or_skip("a_pod_in_its_own_user_namespace_with_berth_runtime") {
        return;
    }
    a_pod_in_its_own_user_namespace("userns-berth", "", BASE_BERTH).await;
}

#[tokio::test]
async fn a_pod_in_its_own_user_namespace_with_runc() {
    if !root_or_skip("a_pod_in_its_own_user_namespace_with_runc") {
        return;
    }
    if !runc_lists_userns() {
        // This runc cannot: berth must refuse, never run without it.
        let mut s = setup_with("userns-runc-no", "runc", fixture::busybox(), |b| b).await;
        let log_dir = s.e.d.dir.join("logs").join("pod");
        let e = run_pod(
            &mut s,
            userns_pod("upod", &log_dir, userns(BASE_RUNC)),
            "runc",
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        s.finish().await;
        return;
    }
    a_pod_in_its_own_user_namespace("userns-runc", "runc", BASE_RUNC).await;
}

/// The pod's namespaces and its shared PID namespace's holder are owned
/// by its user namespace: containers joining them can mount /proc.
#[tokio::test]
async fn a_shared_pid_namespace_belongs_to_the_pods_user_namespace() {
    if !root_or_skip("a_shared_pid_namespace_belongs_to_the_pods_user_namespace") {
        return;
    }
    let base = BASE_BERTH + LEN;
    let mut s = setup_with("userns-pidns", "", fixture::busybox(), |b| b).await;
    let log_dir = s.e.d.dir.join("logs").join("pod");
    let mut config = userns_pod("shared", &log_dir, userns(base));
    config
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .pid = NamespaceMode::Pod as i32;
    let pod = run_pod(&mut s, config, "")
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", s.e.d.log()));
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let mut c = s.config(name, &["sleep", "1000"]);
        c.linux.as_mut().unwrap().security_context = Some(LinuxContainerSecurityContext {
            namespace_options: Some(NamespaceOption {
                pid: NamespaceMode::Pod as i32,
                userns_options: Some(userns(base)),
                ..Default::default()
            }),
            ..Default::default()
        });
        let id = s
            .create_in(&pod, c)
            .await
            .unwrap_or_else(|e| panic!("{e:?}\n{}", s.e.d.log()));
        s.start(&id).await;
        ids.push(id);
    }
    // Both see each other's sleep and the holder as pid 1.
    let (code, out) = s
        .sh(
            &ids[0],
            "cat /proc/1/cmdline | tr '\\0' ' '; echo; ps -o pid,comm | grep -c sleep",
        )
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("pause"), "{out}");
    assert!(out.ends_with('2'), "{out}");
    // The holder runs as the pod's root on the host, in the pod's user
    // namespace, which owns the PID namespace the containers share.
    let holder = holder_of(&pod);
    let init = s.init_pid(&ids[0]).await;
    let ns = |pid: i32, kind: &str| fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
    let status = fs::read_to_string(format!("/proc/{holder}/status")).unwrap();
    assert!(status.contains(&format!("Uid:\t{base}\t")), "{status}");
    assert_eq!(ns(holder, "user"), ns(init, "user"));
    assert_eq!(ns(holder, "pid"), ns(init, "pid"));
    assert_ne!(ns(holder, "user"), ns(std::process::id() as i32, "user"));
    for c in &ids {
        s.stop(c, 0).await;
        s.remove(c).await;
    }
    remove_pod(&mut s, &pod).await;
    s.finish().await;
}

/// The host pid of the PID-namespace holder of `pod` (`berth-shim pause
/// <pod>`).
fn holder_of(pod: &str) -> i32 {
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.len() >= 3 && args[1] == b"pause" && args[2] == pod.as_bytes() {
            found.push(pid);
        }
    }
    assert_eq!(found.len(), 1, "holders of {pod}: {found:?}");
    found[0]
}

#[tokio::test]
async fn forbidden_mappings_are_invalid_arguments() {
    if !root_or_skip("forbidden_mappings_are_invalid_arguments") {
        return;
    }
    let mut s = setup_with("userns-invalid", "", fixture::busybox(), |b| b).await;
    let log_dir = s.e.d.dir.join("logs").join("pod");
    let m = |host_id, container_id, length| IdMapping {
        host_id,
        container_id,
        length,
    };
    let pod = |uids, gids| UserNamespace {
        mode: NamespaceMode::Pod as i32,
        uids,
        gids,
    };
    let cases: Vec<(UserNamespace, &str)> = vec![
        (
            pod(
                vec![m(BASE_REFUSED, 0, 10), m(BASE_REFUSED + 10, 10, 10)],
                ids(BASE_REFUSED),
            ),
            "only one",
        ),
        (
            pod(
                ids(BASE_REFUSED),
                vec![m(BASE_REFUSED, 0, 10), m(BASE_REFUSED + 10, 10, 10)],
            ),
            "only one",
        ),
        (
            pod(vec![m(BASE_REFUSED, 1, LEN)], ids(BASE_REFUSED)),
            "container id 0 is not mapped",
        ),
        (pod(Vec::new(), ids(BASE_REFUSED)), "no mapping"),
        (pod(ids(BASE_REFUSED), Vec::new()), "no mapping"),
        (
            pod(vec![m(BASE_REFUSED, 0, 0)], ids(BASE_REFUSED)),
            "length 0",
        ),
        (
            pod(vec![m(u32::MAX - 5, 0, LEN)], ids(BASE_REFUSED)),
            "overflow",
        ),
        (
            UserNamespace {
                mode: NamespaceMode::Container as i32,
                ..userns(BASE_REFUSED)
            },
            "CONTAINER",
        ),
        (
            UserNamespace {
                mode: NamespaceMode::Target as i32,
                ..userns(BASE_REFUSED)
            },
            "TARGET",
        ),
    ];
    for (u, want) in cases {
        let e = run_pod(&mut s, userns_pod("bad", &log_dir, u.clone()), "")
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{u:?}: {e:?}");
        assert!(e.message().contains(want), "{want}: {}", e.message());
    }
    let pods =
        s.c.runtime
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
    assert_eq!(pods.len(), 1, "only the setup's pod: {pods:?}");
    s.finish().await;
}

/// A handler whose runtime does not list user namespaces (here one with
/// no `features` at all) reports none, and a pod asking for one on it is
/// refused, never run without it.
#[tokio::test]
async fn a_handler_without_user_namespaces_refuses_them() {
    if !root_or_skip("a_handler_without_user_namespaces_refuses_them") {
        return;
    }
    let mut s = setup_with("userns-handler", "", fixture::busybox(), |b| {
        // Listing one handler replaces the default ones: all three.
        b.config("runtime.handlers.berth", "path", "\"\"")
            .config("runtime.handlers.runc", "path", "\"runc\"")
            .config("runtime.handlers.nouserns", "path", "\"/bin/true\"")
    })
    .await;
    let status =
        s.c.runtime
            .status(StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
    let claims = |name: &str| {
        status
            .runtime_handlers
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("{name}: {:?}", status.runtime_handlers))
            .features
            .unwrap()
            .user_namespaces
    };
    assert!(claims(""), "the default handler, berth-runtime");
    assert!(claims("berth"));
    assert_eq!(claims("runc"), runc_lists_userns());
    assert!(!claims("nouserns"));
    let log_dir = s.e.d.dir.join("logs").join("pod");
    let e = run_pod(
        &mut s,
        userns_pod("refused", &log_dir, userns(BASE_REFUSED)),
        "nouserns",
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("does not support user namespaces"),
        "{e:?}"
    );
    let pods =
        s.c.runtime
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
    assert_eq!(pods.len(), 1, "nothing left of the refused pod: {pods:?}");
    s.finish().await;
}
