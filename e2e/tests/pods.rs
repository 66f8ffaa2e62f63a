//! Pod sandboxes end to end: namespaces, cgroups, files and networking
//! through real CNI plugins (Debian's bridge + host-local + portmap, and
//! berth's own berth-bridge), on each test's own bridge and subnet.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_cli::client::CriClient;
use berth_e2e::netns::{bridge_ports, in_netns, in_ns};
use berth_e2e::podnet::{Plugins, env, env_with, pod_config};
use berth_e2e::{Berthd, root_or_skip};
use k8s_cri::v1::*;
use nix::sched::CloneFlags;
use tonic::Code;

async fn run(c: &mut CriClient, config: PodSandboxConfig) -> Result<String, tonic::Status> {
    c.runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .map(|r| r.into_inner().pod_sandbox_id)
}

async fn status(c: &mut CriClient, id: &str) -> PodSandboxStatusResponse {
    c.runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn ip(c: &mut CriClient, id: &str) -> String {
    status(c, id).await.status.unwrap().network.unwrap().ip
}

async fn stop(c: &mut CriClient, id: &str) {
    c.runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .unwrap();
}

async fn remove(c: &mut CriClient, id: &str) {
    c.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .unwrap();
}

fn netns_path(d: &Berthd, id: &str) -> PathBuf {
    d.state_dir.join("netns").join(id)
}

/// Serves one TCP connection inside the netns: replies "pong <what it read>".
fn serve_once(netns: &Path, port: u16) -> std::thread::JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let netns = netns.to_owned();
    let h = std::thread::spawn(move || {
        in_netns(&netns, move || {
            let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
            tx.send(()).unwrap();
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).unwrap();
            s.write_all(b"pong").unwrap();
        })
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    h
}

fn ping(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"ping").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    buf
}

async fn two_pods_talk_and_stop_releases_everything(plugins: Plugins) {
    let e = env(
        if plugins == Plugins::Debian {
            "podsdeb"
        } else {
            "podsbb"
        },
        plugins,
    );
    let mut c = e.d.client().await;
    let mut cfg_a = pod_config("a");
    cfg_a.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 8080,
        host_port: 0,
        host_ip: String::new(),
    }];
    let a = run(&mut c, cfg_a).await.unwrap();
    let b = run(&mut c, pod_config("b")).await.unwrap();
    let (ip_a, ip_b) = (ip(&mut c, &a).await, ip(&mut c, &b).await);
    assert!(ip_a.starts_with(&e.net.lease.prefix), "{ip_a}");
    assert!(ip_b.starts_with(&e.net.lease.prefix), "{ip_b}");
    assert_ne!(ip_a, ip_b);
    let st = status(&mut c, &a).await.status.unwrap();
    assert_eq!(st.state, PodSandboxState::SandboxReady as i32);
    assert_eq!(st.metadata.unwrap().name, "a");

    // b reaches a, and the host reaches a.
    let server = serve_once(&netns_path(&e.d, &a), 8080);
    let to_a: SocketAddr = format!("{ip_a}:8080").parse().unwrap();
    let reply = in_netns(&netns_path(&e.d, &b), move || ping(to_a));
    assert_eq!(reply, "pong");
    server.join().unwrap();
    let server = serve_once(&netns_path(&e.d, &a), 8080);
    assert_eq!(ping(to_a), "pong");
    server.join().unwrap();

    // The hostname is set in the pod's UTS namespace; lo is up.
    let uts = e.d.state_dir.join("pods").join(&a).join("uts");
    let hostname = in_ns(&uts, CloneFlags::CLONE_NEWUTS, || {
        nix::unistd::gethostname().unwrap().into_string().unwrap()
    });
    assert_eq!(hostname, "a");
    let lo = in_netns(&netns_path(&e.d, &a), || {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| TcpStream::connect(l.local_addr()?))
            .is_ok()
    });
    assert!(lo, "loopback works in the pod");
    let files = e.d.root_dir.join("pods").join(&a);
    assert!(
        fs::read_to_string(files.join("hosts"))
            .unwrap()
            .contains(&format!("{ip_a}\ta"))
    );

    // Stop: the IP is released, the veth and the pinned netns are gone.
    stop(&mut c, &a).await;
    stop(&mut c, &a).await; // idempotent
    assert!(!netns_path(&e.d, &a).exists());
    let st = status(&mut c, &a).await.status.unwrap();
    assert_eq!(st.state, PodSandboxState::SandboxNotready as i32);
    let c_id = run(&mut c, pod_config("c")).await.unwrap();
    let ip_c = ip(&mut c, &c_id).await;
    for id in [&a, &b, &c_id] {
        remove(&mut c, id).await;
    }
    remove(&mut c, &a).await; // unknown: fine
    stop(
        &mut c,
        "0000000000000000000000000000000000000000000000000000000000000000",
    )
    .await;
    let ports = bridge_ports(&e.net.lease.bridge);
    assert!(ports.is_empty(), "veths left on the bridge: {ports:?}");
    assert!(
        fs::read_dir(e.d.state_dir.join("netns"))
            .unwrap()
            .next()
            .is_none()
    );
    // The address a gave back can be handed out again (host-local hands
    // out the next one first, so it need not be c's).
    assert!(ip_c.starts_with(&e.net.lease.prefix));
    let list = c
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(list.is_empty(), "{list:?}");
}

#[tokio::test]
async fn pods_with_debian_plugins() {
    if !root_or_skip("pods_with_debian_plugins") {
        return;
    }
    two_pods_talk_and_stop_releases_everything(Plugins::Debian).await;
}

#[tokio::test]
async fn pods_with_berth_bridge() {
    if !root_or_skip("pods_with_berth_bridge") {
        return;
    }
    two_pods_talk_and_stop_releases_everything(Plugins::Berth).await;
}

#[tokio::test]
async fn host_port_reaches_the_pod_from_the_host() {
    if !root_or_skip("host_port_reaches_the_pod_from_the_host") {
        return;
    }
    let e = env("podhp", Plugins::Berth);
    let mut c = e.d.client().await;
    let host_port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = pod_config("hp");
    cfg.port_mappings = cfg_ports(host_port);
    let id = run(&mut c, cfg).await.unwrap();
    let gw: SocketAddr = format!("{}1:{host_port}", e.net.lease.prefix)
        .parse()
        .unwrap();
    let server = serve_once(&netns_path(&e.d, &id), 8080);
    assert_eq!(ping(gw), "pong", "host port via the host's bridge address");
    server.join().unwrap();

    // A second pod asking for the same host port is refused, naming the
    // first, and leaves nothing; the port is free once the first stops.
    let mut twin = pod_config("hp-twin");
    twin.port_mappings = cfg_ports(host_port);
    let err = run(&mut c, twin.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains(&id) && err.message().contains("e2e/hp"),
        "{}",
        err.message()
    );
    c.runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    let id2 = run(&mut c, twin).await.unwrap();
    remove(&mut c, &id2).await;
    remove(&mut c, &id).await;
}

fn cfg_ports(host_port: u16) -> Vec<PortMapping> {
    vec![PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 8080,
        host_port: host_port as i32,
        host_ip: String::new(),
    }]
}

#[tokio::test]
async fn lifecycle_rules_and_bad_input() {
    if !root_or_skip("lifecycle_rules_and_bad_input") {
        return;
    }
    let e = env("podbad", Plugins::Debian);
    let mut c = e.d.client().await;

    let id = run(&mut c, pod_config("dup")).await.unwrap();
    let err = run(&mut c, pod_config("dup")).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains(&id), "{}", err.message());
    let mut attempt = pod_config("dup");
    attempt.metadata.as_mut().unwrap().attempt = 1;
    let id2 = run(&mut c, attempt).await.unwrap();

    // Labels, annotations and the filter.
    let mut labelled = pod_config("lab");
    labelled.labels = HashMap::from([("app".into(), "web".into())]);
    labelled.annotations = HashMap::from([("note".into(), "x".into())]);
    let id3 = run(&mut c, labelled).await.unwrap();
    let found = c
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                label_selector: HashMap::from([("app".into(), "web".into())]),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, id3);
    assert_eq!(found[0].annotations["note"], "x");
    let by_prefix = c
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                id: id[..12].into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(by_prefix.len(), 1);

    // Pod sysctls land in the pod's namespaces.
    let mut sysctl = pod_config("sysctl");
    sysctl.linux.as_mut().unwrap().sysctls =
        HashMap::from([("net.ipv4.ip_unprivileged_port_start".into(), "77".into())]);
    let id4 = run(&mut c, sysctl).await.unwrap();
    let v = in_netns(&netns_path(&e.d, &id4), || {
        fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap()
    });
    assert_eq!(v.trim(), "77");

    for id in [&id, &id2, &id3, &id4] {
        remove(&mut c, id).await;
    }

    let cases: Vec<(&str, PodSandboxConfig, &str)> = vec![
        ("no metadata", PodSandboxConfig::default(), "metadata"),
        (
            "node sysctl",
            {
                let mut p = pod_config("s");
                p.linux.as_mut().unwrap().sysctls =
                    HashMap::from([("kernel.panic".into(), "1".into())]);
                p
            },
            "not namespaced",
        ),
        (
            "dns option",
            {
                let mut p = pod_config("s");
                p.dns_config = Some(DnsConfig {
                    servers: vec!["10.0.0.10".into()],
                    searches: vec![],
                    options: vec!["bogus:1".into()],
                });
                p
            },
            "dns option",
        ),
        (
            "hostname",
            {
                let mut p = pod_config("s");
                p.hostname = "bad_name".into();
                p
            },
            "hostname",
        ),
    ];
    for (what, cfg, want) in cases {
        let err = run(&mut c, cfg).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(err.message().contains(want), "{what}: {}", err.message());
    }
    let err = c
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config("h")),
            runtime_handler: "kata".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("runtime handler"));
    let err = c
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: "nosuch".into(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn failing_plugins_leave_nothing_behind() {
    if !root_or_skip("failing_plugins_leave_nothing_behind") {
        return;
    }
    let bin = berth_e2e::env::scratch_dir("failbin");
    let p = bin.join("failer");
    fs::write(
        &p,
        "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then echo '{\"cniVersion\":\"1.0.0\",\"code\":111,\"msg\":\"test failure\"}'; exit 1; fi\nexit 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    let e = env_with("podfail", Plugins::Debian, Some(&bin));
    let mut c = e.d.client().await;
    // The real bridge first: its ADD must be undone when the failer fails.
    let mut list: serde_json::Value = serde_json::from_str(&e.net.conflist()).unwrap();
    list["plugins"][1] = serde_json::json!({"type": "failer"});
    let conf = e.d.cni_conf_dir.join("10-test.conflist");
    fs::write(&conf, list.to_string()).unwrap();
    let err = run(&mut c, pod_config("f")).await.unwrap_err();
    assert!(err.message().contains("test failure"), "{err:?}");
    assert!(
        fs::read_dir(e.d.state_dir.join("netns"))
            .map(|mut d| d.next().is_none())
            .unwrap_or(true)
    );
    assert!(
        fs::read_dir(e.d.root_dir.join("pods"))
            .map(|mut d| d.next().is_none())
            .unwrap_or(true)
    );
    let ports = bridge_ports(&e.net.lease.bridge);
    assert!(ports.is_empty(), "veths left on the bridge: {ports:?}");
    let reserved: Vec<_> = walk(&e.net.ipam)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&e.net.lease.prefix))
        })
        .collect();
    assert!(reserved.is_empty(), "IP still reserved: {reserved:?}");
    // The same name again works once the network works again.
    fs::write(&conf, e.net.conflist()).unwrap();
    let id = run(&mut c, pod_config("f")).await.unwrap();
    remove(&mut c, &id).await;

    // A broken conflist: NetworkReady false, and pods fail saying why.
    fs::write(&conf, "{").unwrap();
    let s = c
        .runtime
        .status(StatusRequest { verbose: false })
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
    assert!(!net.status);
    let err = run(&mut c, pod_config("g")).await.unwrap_err();
    assert!(err.message().contains("network"), "{err:?}");
    drop(c);
    drop(e);
    fs::remove_dir_all(&bin).ok();
}

#[tokio::test]
async fn pods_survive_a_daemon_restart_and_host_network_pods_work() {
    if !root_or_skip("pods_survive_a_daemon_restart_and_host_network_pods_work") {
        return;
    }
    let mut e = env("podrestart", Plugins::Berth);
    let mut c = e.d.client().await;
    let id = run(&mut c, pod_config("r")).await.unwrap();
    let ip_before = ip(&mut c, &id).await;
    drop(c);
    e.d.kill9();
    e.d.spawn_and_wait_ready();
    let mut c = e.d.client().await;
    assert_eq!(ip(&mut c, &id).await, ip_before);
    assert_eq!(
        status(&mut c, &id).await.status.unwrap().state,
        PodSandboxState::SandboxReady as i32
    );
    remove(&mut c, &id).await;

    let mut host = pod_config("hostnet");
    host.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options = Some(NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Node as i32,
        ..Default::default()
    });
    let hid = run(&mut c, host).await.unwrap();
    assert!(!netns_path(&e.d, &hid).exists());
    assert_eq!(ip(&mut c, &hid).await, "");
    remove(&mut c, &hid).await;
}

#[tokio::test]
async fn many_cycles_leave_nothing_behind() {
    if !root_or_skip("many_cycles_leave_nothing_behind") {
        return;
    }
    let cycles: usize = std::env::var("BERTH_POD_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let e = env("podcycles", Plugins::Berth);
    let mut c = e.d.client().await;
    let mounts = || -> usize {
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(e.d.dir.to_str().unwrap()))
            .count()
    };
    let mut ids = Vec::new();
    for i in 0..cycles {
        let id = run(&mut c, pod_config(&format!("cycle{i}"))).await.unwrap();
        stop(&mut c, &id).await;
        remove(&mut c, &id).await;
        ids.push(id);
    }
    let ports = bridge_ports(&e.net.lease.bridge);
    assert!(ports.is_empty(), "veths left on the bridge: {ports:?}");
    assert_eq!(mounts(), 0, "mounts left under {}", e.d.dir.display());
    assert!(
        fs::read_dir(e.d.state_dir.join("netns"))
            .unwrap()
            .next()
            .is_none()
    );
    let reserved: Vec<_> = walk(&e.net.ipam)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&e.net.lease.prefix))
        })
        .collect();
    assert!(reserved.is_empty(), "IPs still reserved: {reserved:?}");
    for root in [
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup",
    ] {
        for id in &ids {
            let cg = e.d.pod_cgroup(root, id);
            assert!(!cg.exists(), "{} left behind", cg.display());
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

/// The NetworkReady condition of a Status call.
async fn network_ready(c: &mut CriClient) -> RuntimeCondition {
    c.runtime
        .status(StatusRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .unwrap()
}

#[tokio::test]
async fn pods_get_addresses_from_the_node_pod_cidr() {
    if !root_or_skip("pods_get_addresses_from_the_node_pod_cidr") {
        return;
    }
    let mut e = env("podcidr", Plugins::Berth);
    // The node's range: another leased /24, so no test shares it.
    let node = berth_e2e::netns::NetLease::take();
    let mut c = e.d.client().await;
    let nr = network_ready(&mut c).await;
    assert!(nr.status && nr.reason == "NoPodCIDR", "{nr:?}");
    // Before kubelet sends it: the network's own subnet.
    let before = run(&mut c, pod_config("early")).await.unwrap();
    assert!(ip(&mut c, &before).await.starts_with(&e.net.lease.prefix));

    c.runtime
        .update_runtime_config(UpdateRuntimeConfigRequest {
            runtime_config: Some(RuntimeConfig {
                network_config: Some(NetworkConfig {
                    pod_cidr: node.subnet.clone(),
                }),
            }),
        })
        .await
        .unwrap();
    let nr = network_ready(&mut c).await;
    assert!(nr.status && nr.reason.is_empty(), "{nr:?}");
    let after = run(&mut c, pod_config("late")).await.unwrap();
    let late_ip = ip(&mut c, &after).await;
    assert!(
        late_ip.starts_with(&node.prefix),
        "{late_ip} not in {}",
        node.subnet
    );
    // The old pod keeps its address; both are reachable through the bridge.
    assert!(ip(&mut c, &before).await.starts_with(&e.net.lease.prefix));
    let server = serve_once(&netns_path(&e.d, &after), 8080);
    assert_eq!(ping(format!("{late_ip}:8080").parse().unwrap()), "pong");
    server.join().unwrap();

    // Kept across a restart (kubelet sends it once).
    drop(c);
    e.d.stop();
    e.d.spawn_and_wait_ready();
    let mut c = e.d.client().await;
    let again = run(&mut c, pod_config("restarted")).await.unwrap();
    assert!(ip(&mut c, &again).await.starts_with(&node.prefix));
    for id in [before, after, again] {
        remove(&mut c, &id).await;
    }
}
