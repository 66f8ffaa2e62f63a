//! berth-bridge against the real kernel: network namespaces, veths, a bridge,
//! nftables. Needs root; without it each test prints a skip message and
//! passes, unless CI=true, where it fails.
//!
//! Every test makes its own namespaces (`ip netns add bbt-…`), bridge
//! (`bbt…`), private subnets (10.200.<r>.0/24 or /29 and fd00:<r>::/64,
//! checked against the host's routes and addresses), IPAM dir (a temp dir)
//! and nftables table (`inet bbt-…`), and a guard removes all of it on drop,
//! also when the test fails. Traffic flows only between the host and those
//! namespaces.
//!
//! Kept as one file past ~600 lines: one plugin under test, every test
//! built on the same network guard; each test is one CNI command or one
//! property (IPAM under concurrency, nftables rules, GC).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use berth_cni::bridge::{attachment_tag, host_veth_name};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(5);

use berth_testkit::root_or_skip;

mod common;
use common::{BIN, cni, in_netns, invoke, link_exists, must, random_u64, run};

/// Subnet octets / v6 groups handed to tests of this process.
static TAKEN: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

fn host_networking() -> String {
    let mut s = String::new();
    for args in [
        ["ip", "-4", "route", "show", "table", "all"],
        ["ip", "-6", "route", "show", "table", "all"],
    ] {
        s.push_str(&run(&args).1);
    }
    s.push_str(&run(&["ip", "addr"]).1);
    s
}

/// A free 10.200.<r>.0 third octet and fd00:<r>:: group.
fn pick_subnets() -> (u8, u16) {
    let mut taken = TAKEN.lock().expect("lock");
    let taken = taken.get_or_insert_with(HashSet::new);
    let used = host_networking();
    loop {
        let r = random_u64();
        let o = (r & 0xff) as u8;
        let g = ((r >> 8) & 0xffff) as u16;
        if g == 0 || taken.contains(&u32::from(o)) || taken.contains(&(0x1_0000 | u32::from(g))) {
            continue;
        }
        if used.contains(&format!("10.200.{o}.")) || used.contains(&format!("fd00:{g:x}:")) {
            continue;
        }
        taken.insert(u32::from(o));
        taken.insert(0x1_0000 | u32::from(g));
        return (o, g);
    }
}

/// Host sysctls the plugin turns on (gateway mode enables forwarding): saved
/// when the first test network of the process is made, restored when the
/// last one is dropped.
const HOST_SYSCTLS: [&str; 2] = [
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/ipv6/conf/all/forwarding",
];
static LIVE: Mutex<(usize, Vec<(String, String)>)> = Mutex::new((0, Vec::new()));

fn hold_sysctls() {
    let mut live = LIVE.lock().expect("lock");
    if live.0 == 0 {
        live.1 = HOST_SYSCTLS
            .iter()
            .filter_map(|p| Some((p.to_string(), std::fs::read_to_string(p).ok()?)))
            .collect();
    }
    live.0 += 1;
}

fn release_sysctls() {
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    live.0 -= 1;
    if live.0 == 0 {
        for (path, value) in live.1.drain(..) {
            let _ = std::fs::write(path, value.trim());
        }
    }
}

/// One test's network: bridge, subnets, IPAM dir, nft table, namespaces.
struct TestNet {
    name: String,
    bridge: String,
    table: String,
    v4: String,
    v6: Option<String>,
    gw4: IpAddr,
    gw6: Option<IpAddr>,
    data: tempfile::TempDir,
    netns: Mutex<Vec<String>>,
}

impl TestNet {
    fn new(dual_stack: bool, v4_prefix: u8) -> Self {
        let id = format!("{:08x}", random_u64() as u32);
        let (o, g) = pick_subnets();
        hold_sysctls();
        Self {
            name: format!("bbt-{id}"),
            bridge: format!("bbt{id}"),
            table: format!("bbt-{id}"),
            v4: format!("10.200.{o}.0/{v4_prefix}"),
            v6: dual_stack.then(|| format!("fd00:{g:x}::/64")),
            gw4: format!("10.200.{o}.1").parse().expect("gw4"),
            gw6: dual_stack.then(|| format!("fd00:{g:x}::1").parse().expect("gw6")),
            data: tempfile::tempdir().expect("tempdir"),
            netns: Mutex::new(Vec::new()),
        }
    }

    fn conf(&self, extra: Value) -> Value {
        let mut subnets = vec![self.v4.clone()];
        subnets.extend(self.v6.clone());
        let mut conf = json!({
            "cniVersion": "1.1.0",
            "name": self.name,
            "type": "berth-bridge",
            "bridge": self.bridge,
            "subnets": subnets,
            "ipMasq": true,
            "dataDir": self.data.path(),
            "nftTable": self.table,
            "capabilities": {"portMappings": true},
        });
        if let (Value::Object(c), Value::Object(e)) = (&mut conf, extra) {
            c.extend(e);
        }
        conf
    }

    /// A new namespace, removed with the network.
    fn netns(&self) -> String {
        let name = format!("bbt-{:012x}", random_u64() & 0xffff_ffff_ffff);
        must(&["ip", "netns", "add", &name]);
        self.netns.lock().expect("lock").push(name.clone());
        format!("/run/netns/{name}")
    }

    fn reservations(&self) -> Vec<IpAddr> {
        let dir = self.data.path().join(&self.name);
        let mut ips: Vec<IpAddr> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        ips.sort();
        ips
    }

    fn nft_table(&self) -> String {
        run(&["nft", "list", "table", "inet", &self.table]).1
    }

    fn host_veth(&self, cid: &str) -> String {
        host_veth_name(&self.name, cid, "eth0")
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for ns in self.netns.lock().map(|v| v.clone()).unwrap_or_default() {
            let _ = run(&["ip", "netns", "del", &ns]);
        }
        // Host veths still on the bridge (their pod ends outlived the netns).
        let (_, ports) = run(&["ip", "-o", "link", "show", "master", &self.bridge]);
        for line in ports.lines() {
            if let Some(name) = line.split(": ").nth(1) {
                let name = name.split('@').next().unwrap_or(name);
                let _ = run(&["ip", "link", "del", name]);
            }
        }
        let _ = run(&["ip", "link", "del", &self.bridge]);
        let _ = run(&["nft", "delete", "table", "inet", &self.table]);
        release_sysctls();
    }
}

/// The addresses of an ADD result, by family.
fn result_ips(result: &Value) -> (Option<IpAddr>, Option<IpAddr>) {
    let mut v4 = None;
    let mut v6 = None;
    for ip in result["ips"].as_array().expect("ips") {
        let addr: IpAddr = ip["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse().ok())
            .expect("address");
        if addr.is_ipv4() {
            v4 = Some(addr);
        } else {
            v6 = Some(addr);
        }
    }
    (v4, v6)
}

/// A TCP (and optionally UDP) server in a namespace answering every
/// connection or datagram with `<name> sees <peer ip>`.
struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    fn start(netns: &str, name: &str, tcp_port: u16, udp_port: Option<u16>) -> Self {
        let (listener, udp) = in_netns(netns, || {
            let l = TcpListener::bind(("::", tcp_port)).expect("bind tcp");
            let u = udp_port.map(|p| UdpSocket::bind(("::", p)).expect("bind udp"));
            (l, u)
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        listener.set_nonblocking(true).expect("nonblocking");
        let (s, n) = (stop.clone(), name.to_string());
        threads.push(std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, peer)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = writeln!(conn, "{n} sees {}", canonical(peer.ip()));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }));
        if let Some(udp) = udp {
            udp.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
            let (s, n) = (stop.clone(), name.to_string());
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while !s.load(Ordering::Relaxed) {
                    if let Ok((_, peer)) = udp.recv_from(&mut buf) {
                        let msg = format!("{n} sees {}\n", canonical(peer.ip()));
                        let _ = udp.send_to(msg.as_bytes(), peer);
                    }
                }
            }));
        }
        Self { stop, threads }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Connects, returns the server's line.
fn fetch(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.trim().to_string())
}

fn fetch_from(netns: &str, addr: SocketAddr) -> std::io::Result<String> {
    in_netns(netns, || fetch(addr))
}

fn udp_ask(addr: SocketAddr) -> std::io::Result<String> {
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("addr")
    } else {
        "[::]:0".parse().expect("addr")
    };
    let sock = UdpSocket::bind(local)?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut buf = [0u8; 128];
    // UDP may lose the first datagram while neighbours resolve: retry.
    for _ in 0..10 {
        sock.send_to(b"ping", addr)?;
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string());
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no UDP answer from {addr}"),
    ))
}

/// A host port nobody listens on (TCP and UDP).
fn free_port() -> u16 {
    loop {
        let p = 20000 + (random_u64() % 20000) as u16;
        if TcpListener::bind(("0.0.0.0", p)).is_ok() && UdpSocket::bind(("0.0.0.0", p)).is_ok() {
            return p;
        }
    }
}

fn sa(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

/// `/run/netns/<name>` → `<name>`
fn ns_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[test]
fn two_pods_dual_stack_reachable() {
    if !root_or_skip("two_pods_dual_stack_reachable") {
        return;
    }
    let net = TestNet::new(true, 24);
    let conf = net.conf(json!({"dns": {"nameservers": ["10.200.0.53"]}}));
    let (ns_a, ns_b) = (net.netns(), net.netns());
    let a = cni("ADD", &conf, "pod-a", Some(&ns_a)).expect_ok().json();
    let b = cni("ADD", &conf, "pod-b", Some(&ns_b)).expect_ok().json();

    // The result.
    assert_eq!(a["cniVersion"], "1.1.0");
    let ifaces = a["interfaces"].as_array().expect("interfaces");
    assert_eq!(ifaces.len(), 3, "{a}");
    assert_eq!(ifaces[0]["name"], net.bridge.as_str());
    assert_eq!(ifaces[1]["name"], net.host_veth("pod-a").as_str());
    assert_eq!(ifaces[2]["name"], "eth0");
    assert_eq!(ifaces[2]["sandbox"], ns_a.as_str());
    assert!(
        ifaces[2]["mac"]
            .as_str()
            .expect("mac")
            .starts_with("0a:58:")
    );
    for ip in a["ips"].as_array().expect("ips") {
        assert_eq!(ip["interface"], 2);
        assert!(ip["gateway"].is_string());
    }
    assert_eq!(a["routes"].as_array().expect("routes").len(), 2);
    assert_eq!(a["dns"]["nameservers"][0], "10.200.0.53");

    let (a4, a6) = result_ips(&a);
    let (b4, b6) = result_ips(&b);
    let (a4, a6, b4, b6) = (
        a4.expect("a v4"),
        a6.expect("a v6"),
        b4.expect("b v4"),
        b6.expect("b v6"),
    );
    assert_ne!(a4, b4);
    assert_ne!(a6, b6);
    assert_ne!(a4, net.gw4);
    assert_eq!(net.reservations().len(), 4);

    // Pod to pod (both families) and host to pod.
    let _srv = Server::start(&ns_a, "pod-a", 8080, None);
    for target in [a4, a6] {
        let got = fetch_from(&ns_b, sa(target, 8080)).expect("pod-b -> pod-a");
        assert!(got.starts_with("pod-a sees"), "{got}");
        // Same subnet: no NAT, the peer is pod-b itself.
        assert!(
            got.ends_with(&b4.to_string()) || got.ends_with(&b6.to_string()),
            "{got}"
        );
        let got = fetch(sa(target, 8080)).expect("host -> pod-a");
        assert!(got.starts_with("pod-a sees"), "{got}");
    }

    cni("CHECK", &conf, "pod-a", Some(&ns_a)).expect_ok();

    // DEL, twice.
    for _ in 0..2 {
        cni("DEL", &conf, "pod-a", Some(&ns_a)).expect_ok();
        cni("DEL", &conf, "pod-b", Some(&ns_b)).expect_ok();
    }
    assert!(net.reservations().is_empty(), "{:?}", net.reservations());
    assert!(!link_exists(&net.host_veth("pod-a")));
    assert!(!link_exists(&net.host_veth("pod-b")));
    let (_, in_ns) = run(&["ip", "-n", ns_name(&ns_a), "link", "show", "eth0"]);
    assert!(in_ns.contains("does not exist"), "{in_ns}");
}

#[test]
fn port_mappings_and_masquerade() {
    if !root_or_skip("port_mappings_and_masquerade") {
        return;
    }
    let net = TestNet::new(true, 24);
    let (tcp, udp) = (free_port(), free_port());
    let mapped = net.conf(json!({"runtimeConfig": {"portMappings": [
        {"hostPort": tcp, "containerPort": 8080, "protocol": "tcp"},
        {"hostPort": udp, "containerPort": 5353, "protocol": "udp"},
    ]}}));
    let plain = net.conf(json!({}));
    let (ns_a, ns_b) = (net.netns(), net.netns());
    let a = cni("ADD", &mapped, "pod-a", Some(&ns_a)).expect_ok().json();
    let b = cni("ADD", &plain, "pod-b", Some(&ns_b)).expect_ok().json();
    let (a4, a6) = result_ips(&a);
    let (a4, a6) = (a4.expect("a4"), a6.expect("a6"));
    let (b4, _) = result_ips(&b);
    let gw6 = net.gw6.expect("gw6");

    // Rules: masquerade for the network, DNAT tagged with the attachment.
    let table = net.nft_table();
    let tag_a = attachment_tag(&net.name, "pod-a", "eth0");
    assert!(
        table.contains(&format!("comment \"berth:{} masq {}\"", net.name, net.v4)),
        "{table}"
    );
    assert!(table.contains("masquerade"), "{table}");
    assert!(table.contains(&format!("dnat ip to {a4}:8080")), "{table}");
    assert!(
        table.contains(&format!("dnat ip6 to [{a6}]:8080")),
        "{table}"
    );
    assert!(table.contains(&format!("comment \"{tag_a}\"")), "{table}");
    assert!(
        !table.contains("pod-b/eth0"),
        "pod-b has no mappings: {table}"
    );

    let _srv = Server::start(&ns_a, "pod-a", 8080, Some(5353));
    // From the host: loopback (masqueraded to the gateway), the host's own
    // addresses on the bridge.
    let got = fetch(sa("127.0.0.1".parse().expect("lo"), tcp)).expect("host 127.0.0.1");
    assert_eq!(got, format!("pod-a sees {}", net.gw4));
    let got = fetch(sa(net.gw4, tcp)).expect("host gw4");
    assert!(got.starts_with("pod-a sees"), "{got}");
    let got = fetch(sa(gw6, tcp)).expect("host gw6");
    assert!(got.starts_with("pod-a sees"), "{got}");
    // From the other pod, through the host's address.
    let got = fetch_from(&ns_b, sa(net.gw4, tcp)).expect("pod-b -> host port");
    assert!(got.starts_with("pod-a sees"), "{got}");
    let got = fetch_from(&ns_b, sa(gw6, tcp)).expect("pod-b -> host port v6");
    assert!(got.starts_with("pod-a sees"), "{got}");
    // Hairpin: pod-a to its own mapped port.
    let got = fetch_from(&ns_a, sa(net.gw4, tcp)).expect("hairpin");
    assert!(got.starts_with("pod-a sees"), "{got}");
    // UDP.
    let got = udp_ask(sa("127.0.0.1".parse().expect("lo"), udp)).expect("udp lo");
    assert!(got.starts_with("pod-a sees"), "{got}");
    let got = in_netns(&ns_b, || udp_ask(sa(net.gw4, udp))).expect("udp from pod-b");
    assert!(got.starts_with("pod-a sees"), "{got}");
    assert_ne!(Some(a4), b4);

    cni("CHECK", &mapped, "pod-a", Some(&ns_a)).expect_ok();

    // DEL removes exactly pod-a's rules; the mapping is gone.
    cni("DEL", &mapped, "pod-a", Some(&ns_a)).expect_ok();
    let table = net.nft_table();
    assert!(!table.contains(&tag_a), "{table}");
    assert!(table.contains("masquerade"), "network rules stay: {table}");
    assert!(fetch(sa("127.0.0.1".parse().expect("lo"), tcp)).is_err());
    cni("DEL", &mapped, "pod-a", Some(&ns_a)).expect_ok();
    cni("DEL", &plain, "pod-b", Some(&ns_b)).expect_ok();
    assert!(net.reservations().is_empty());
}

#[test]
fn del_releases_address_for_reuse() {
    if !root_or_skip("del_releases_address_for_reuse") {
        return;
    }
    // A /29 holds 5 pods: .2 - .6 (.0 network, .1 gateway, .7 broadcast).
    let net = TestNet::new(false, 29);
    let conf = net.conf(json!({}));
    let mut pods = Vec::new();
    for i in 0..5 {
        let ns = net.netns();
        let cid = format!("c{i}");
        let r = cni("ADD", &conf, &cid, Some(&ns)).expect_ok().json();
        pods.push((cid, ns, result_ips(&r).0.expect("v4")));
    }
    let got: Vec<String> = pods.iter().map(|p| p.2.to_string()).collect();
    let base = net.v4.trim_end_matches(".0/29");
    let want: Vec<String> = (2..=6).map(|i| format!("{base}.{i}")).collect();
    assert_eq!(got, want);

    // Full: the sixth ADD fails cleanly.
    let ns6 = net.netns();
    let out = cni("ADD", &conf, "c5", Some(&ns6));
    assert_eq!(out.error_code(), 100, "{out:?}");
    assert!(!link_exists(&net.host_veth("c5")));
    assert_eq!(net.reservations().len(), 5);

    // A full pool: STATUS says not ready (50).
    let out = invoke(Some("STATUS"), &conf.to_string(), &[]);
    assert_eq!(out.error_code(), 50, "{out:?}");

    // DEL releases: the address is handed out again.
    cni("DEL", &conf, "c2", Some(&pods[2].1)).expect_ok();
    invoke(Some("STATUS"), &conf.to_string(), &[]).expect_ok();
    let r = cni("ADD", &conf, "c5", Some(&ns6)).expect_ok().json();
    assert_eq!(result_ips(&r).0, Some(pods[2].2));

    // An ADD retried for the same attachment keeps its address.
    let r = cni("ADD", &conf, "c1", Some(&pods[1].1)).expect_ok().json();
    assert_eq!(result_ips(&r).0, Some(pods[1].2));
    cni("CHECK", &conf, "c1", Some(&pods[1].1)).expect_ok();

    // DEL is idempotent: again, after the netns is gone, without CNI_NETNS.
    cni("DEL", &conf, "c2", Some(&pods[2].1)).expect_ok();
    must(&["ip", "netns", "del", ns_name(&pods[0].1)]);
    cni("DEL", &conf, "c0", Some(&pods[0].1)).expect_ok();
    cni("DEL", &conf, "c1", None).expect_ok();
    for (cid, ns, _) in &pods[3..] {
        cni("DEL", &conf, cid, Some(ns)).expect_ok();
    }
    cni("DEL", &conf, "c5", Some(&ns6)).expect_ok();
    assert!(net.reservations().is_empty(), "{:?}", net.reservations());
    let (_, ports) = run(&["ip", "-o", "link", "show", "master", &net.bridge]);
    assert!(ports.trim().is_empty(), "ports left: {ports}");
}

#[test]
fn check_fails_once_the_veth_is_gone() {
    if !root_or_skip("check_fails_once_the_veth_is_gone") {
        return;
    }
    let net = TestNet::new(true, 24);
    let conf = net.conf(json!({}));
    let ns = net.netns();
    let result = cni("ADD", &conf, "pod", Some(&ns)).expect_ok().json();
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = result;
    cni("CHECK", &with_prev, "pod", Some(&ns)).expect_ok();

    must(&["ip", "link", "del", &net.host_veth("pod")]);
    let out = cni("CHECK", &with_prev, "pod", Some(&ns));
    assert_eq!(out.error_code(), 103, "{out:?}");
    assert!(
        out.json()["details"]
            .as_str()
            .expect("details")
            .contains("missing")
    );
    cni("DEL", &conf, "pod", Some(&ns)).expect_ok();
    let out = cni("CHECK", &conf, "pod", Some(&ns));
    assert_eq!(out.error_code(), 103, "{out:?}");
}

#[test]
fn version_and_legacy_results() {
    if !root_or_skip("version_and_legacy_results") {
        return;
    }
    let out = invoke(Some("VERSION"), "", &[]).expect_ok().json();
    assert_eq!(out["cniVersion"], "1.1.0");
    assert_eq!(out["supportedVersions"], json!(["0.4.0", "1.0.0", "1.1.0"]));

    let net = TestNet::new(true, 24);
    let mut conf = net.conf(json!({}));
    conf["cniVersion"] = json!("0.4.0");
    let ns = net.netns();
    let r = cni("ADD", &conf, "old", Some(&ns)).expect_ok().json();
    assert_eq!(r["cniVersion"], "0.4.0");
    let versions: Vec<&str> = r["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .map(|ip| ip["version"].as_str().expect("version"))
        .collect();
    assert_eq!(versions, ["4", "6"]);
    cni("CHECK", &conf, "old", Some(&ns)).expect_ok();
    cni("DEL", &conf, "old", Some(&ns)).expect_ok();

    conf["cniVersion"] = json!("0.3.1");
    let out = cni("ADD", &conf, "older", Some(&ns));
    assert_eq!(out.error_code(), 1, "{out:?}");
}

#[test]
fn concurrent_adds_get_distinct_addresses() {
    if !root_or_skip("concurrent_adds_get_distinct_addresses") {
        return;
    }
    const N: usize = 20;
    let net = TestNet::new(true, 24);
    let conf = net.conf(json!({})).to_string();
    let namespaces: Vec<String> = (0..N).map(|_| net.netns()).collect();

    let spawn = |cmd: &str, i: usize| {
        let mut c = Command::new(BIN);
        c.env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", format!("par{i}"))
            .env("CNI_NETNS", &namespaces[i])
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(conf.as_bytes())
            .expect("stdin");
        child
    };
    let children: Vec<_> = (0..N).map(|i| spawn("ADD", i)).collect();
    let mut v4 = HashSet::new();
    let mut v6 = HashSet::new();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "ADD failed: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: Value = serde_json::from_str(&stdout).expect("json");
        let (a, b) = result_ips(&r);
        v4.insert(a.expect("v4"));
        v6.insert(b.expect("v6"));
    }
    assert_eq!(v4.len(), N, "{v4:?}");
    assert_eq!(v6.len(), N, "{v6:?}");
    assert_eq!(net.reservations().len(), 2 * N);
    let (_, ports) = run(&["ip", "-o", "link", "show", "master", &net.bridge]);
    assert_eq!(ports.lines().count(), N, "{ports}");

    let children: Vec<_> = (0..N).map(|i| spawn("DEL", i)).collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "DEL failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert!(net.reservations().is_empty());
    let (_, ports) = run(&["ip", "-o", "link", "show", "master", &net.bridge]);
    assert!(ports.trim().is_empty(), "{ports}");
}

#[test]
fn errors_are_cni_json_with_codes() {
    if !root_or_skip("errors_are_cni_json_with_codes") {
        return;
    }
    let net = TestNet::new(false, 24);
    let ns = net.netns();

    // Invalid network config: 7.
    let mut bad = net.conf(json!({}));
    bad["subnets"] = json!([]);
    assert_eq!(cni("ADD", &bad, "x", Some(&ns)).error_code(), 7);
    bad["subnets"] = json!(["10.0.0.0/8", "10.1.0.0/16"]);
    assert_eq!(cni("ADD", &bad, "x", Some(&ns)).error_code(), 7);
    bad["subnets"] = json!(["300.1.2.0/24"]);
    assert_eq!(cni("ADD", &bad, "x", Some(&ns)).error_code(), 7);
    // Undecodable stdin: 6.
    let out = invoke(
        Some("ADD"),
        "{not json",
        &[
            ("CNI_CONTAINERID", "x"),
            ("CNI_NETNS", &ns),
            ("CNI_IFNAME", "eth0"),
        ],
    );
    assert_eq!(out.error_code(), 6);
    let conf = net.conf(json!({}));
    // Missing / bad environment: 4.
    let out = invoke(
        Some("ADD"),
        &conf.to_string(),
        &[("CNI_NETNS", &ns), ("CNI_IFNAME", "eth0")],
    );
    assert_eq!(out.error_code(), 4);
    assert_eq!(invoke(Some("FROB"), &conf.to_string(), &[]).error_code(), 4);
    // A namespace that does not exist: 3.
    let out = cni("ADD", &conf, "x", Some("/run/netns/bbt-does-not-exist"));
    assert_eq!(out.error_code(), 3, "{out:?}");
    // The IPAM lock held elsewhere: 11 (try again later).
    let dir = net.data.path().join(&net.name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let lock = File::create(dir.join("lock")).expect("lock file");
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).expect("flock");
    let quick = net.conf(json!({"lockTimeoutMs": 200}));
    let out = cni("ADD", &quick, "x", Some(&ns));
    assert_eq!(out.error_code(), 11, "{out:?}");
    drop(held);
    // Not a namespace file: 4.
    let not_ns = net.data.path().join("not-a-netns");
    std::fs::write(&not_ns, "").expect("write");
    let out = cni("ADD", &conf, "x", not_ns.to_str());
    assert_eq!(out.error_code(), 4, "{out:?}");
    // CNI_IFNAME taken in the pod by a link that is not ours: 104, and that
    // link is left alone.
    let ns_n = ns_name(&ns);
    must(&[
        "ip", "-n", ns_n, "link", "add", "eth0", "type", "veth", "peer", "name", "other",
    ]);
    let out = cni("ADD", &conf, "x", Some(&ns));
    assert_eq!(out.error_code(), 104, "{out:?}");
    let eth0 = must(&["ip", "-n", ns_n, "-o", "link", "show", "eth0"]);
    assert!(eth0.contains("eth0@other"), "{eth0}");
    // Nothing was left behind by any of these.
    assert!(net.reservations().is_empty());
    assert!(!link_exists(&net.host_veth("x")));
    cni("DEL", &conf, "x", Some(&ns)).expect_ok();
}

#[test]
fn status_and_gc() {
    if !root_or_skip("status_and_gc") {
        return;
    }
    let net = TestNet::new(true, 24);
    let port = free_port();
    let mapped = net.conf(json!({"runtimeConfig": {"portMappings": [
        {"hostPort": port, "containerPort": 80}]}}));
    let plain = net.conf(json!({}));

    let out = invoke(Some("STATUS"), &plain.to_string(), &[]).expect_ok();
    assert!(out.stdout.is_empty(), "{out:?}");
    // An IPAM dir that cannot be created: not ready (50).
    let file = net.data.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    let mut unwritable = plain.clone();
    unwritable["dataDir"] = json!(file.join("sub"));
    assert_eq!(
        invoke(Some("STATUS"), &unwritable.to_string(), &[]).error_code(),
        50
    );

    let (ns_a, ns_b) = (net.netns(), net.netns());
    cni("ADD", &mapped, "gc-a", Some(&ns_a)).expect_ok();
    cni("ADD", &plain, "gc-b", Some(&ns_b)).expect_ok();
    assert_eq!(net.reservations().len(), 4);
    let tag_a = attachment_tag(&net.name, "gc-a", "eth0");
    assert!(net.nft_table().contains(&tag_a));

    let mut gc = plain.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "gc-b", "ifname": "eth0"}]);
    invoke(Some("GC"), &gc.to_string(), &[]).expect_ok();
    assert_eq!(net.reservations().len(), 2, "gc-a released, gc-b kept");
    let table = net.nft_table();
    assert!(!table.contains(&tag_a), "{table}");
    assert!(table.contains("masquerade"), "{table}");
    cni("CHECK", &plain, "gc-b", Some(&ns_b)).expect_ok();

    cni("DEL", &mapped, "gc-a", Some(&ns_a)).expect_ok();
    cni("DEL", &plain, "gc-b", Some(&ns_b)).expect_ok();
    assert!(net.reservations().is_empty());
}

#[test]
fn add_del_latency() {
    if !root_or_skip("add_del_latency") {
        return;
    }
    const ROUNDS: usize = 10;
    let net = TestNet::new(true, 24);
    let conf = net.conf(json!({"runtimeConfig": {"portMappings": [
        {"hostPort": free_port(), "containerPort": 80}]}}));
    let ns = net.netns();
    let (mut add, mut del) = (Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        let cid = format!("lat{i}");
        let t = Instant::now();
        cni("ADD", &conf, &cid, Some(&ns)).expect_ok();
        add.push(t.elapsed());
        let t = Instant::now();
        cni("DEL", &conf, &cid, Some(&ns)).expect_ok();
        del.push(t.elapsed());
    }
    add.sort();
    del.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "berth-bridge latency over {ROUNDS} rounds (dual stack, 1 port mapping): \
         ADD median {:.1} ms max {:.1} ms; DEL median {:.1} ms max {:.1} ms",
        ms(add[ROUNDS / 2]),
        ms(add[ROUNDS - 1]),
        ms(del[ROUNDS / 2]),
        ms(del[ROUNDS - 1]),
    );
    assert!(add[ROUNDS - 1] < Duration::from_secs(5));
    assert!(del[ROUNDS - 1] < Duration::from_secs(5));
}

#[test]
fn ipv6_only_network() {
    if !root_or_skip("ipv6_only_network") {
        return;
    }
    let net = TestNet::new(true, 24);
    let conf = net.conf(json!({"subnets": [net.v6.clone().expect("v6")]}));
    let (ns_a, ns_b) = (net.netns(), net.netns());
    let a = cni("ADD", &conf, "v6-a", Some(&ns_a)).expect_ok().json();
    cni("ADD", &conf, "v6-b", Some(&ns_b)).expect_ok();
    let (a4, a6) = result_ips(&a);
    assert_eq!(a4, None);
    let a6 = a6.expect("v6");
    assert_eq!(a["routes"][0]["dst"], "::/0");
    let _srv = Server::start(&ns_a, "v6-a", 8080, None);
    let got = fetch_from(&ns_b, sa(a6, 8080)).expect("pod-b -> pod-a");
    assert!(got.starts_with("v6-a sees fd00:"), "{got}");
    let got = fetch(sa(a6, 8080)).expect("host -> pod-a");
    assert!(got.starts_with("v6-a sees"), "{got}");
    cni("CHECK", &conf, "v6-a", Some(&ns_a)).expect_ok();
    cni("DEL", &conf, "v6-a", Some(&ns_a)).expect_ok();
    cni("DEL", &conf, "v6-b", Some(&ns_b)).expect_ok();
    assert!(net.reservations().is_empty());
}
