//! berth-bridge's traffic shaping (capability `bandwidth`) against the real
//! kernel: the qdiscs, filter and ifb device it sets up (read back with
//! iproute2's `tc` and `ip`, which the plugin itself never runs), the rate
//! traffic really gets, CHECK, DEL, GC and refused limits. Needs root;
//! without it each test prints a skip message and passes, unless CI=true,
//! where it fails. Egress shaping needs ifb in the kernel: without it the
//! egress tests check that ADD fails with code 105, then skip the rest.
//!
//! Every test makes its own namespaces (`ip netns add bbw-…`), bridge
//! (`bbw…`), private subnet (10.201.<r>.0/24, checked against the host's
//! routes and addresses) and IPAM dir, without masquerade or port mappings
//! (no nftables), and a guard removes all of it on drop, also when the
//! test fails. Traffic flows only between the host and those namespaces.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_cni::bridge::{host_veth_name, ifb_name};
use berth_testkit::{require, root_or_skip};
use serde_json::{Value, json};

mod common;
use common::{BIN, cni, in_netns, link_exists, must, random_u64, run};

/// The shaped rate of the throughput tests: 8 Mbit/s = 1 MB/s.
const RATE: u64 = 8_000_000;
/// Their burst: 100 kbit = 12.5 kB (12.5 ms at the rate).
const BURST: u64 = 100_000;
/// Bytes sent through a shaped link: ~2 s at the rate.
const TRANSFER: usize = 2_000_000;

/// Whether the kernel can make ifb devices (probed with a throwaway one).
fn kernel_has_ifb() -> bool {
    let name = format!("bwq{:08x}", random_u64() as u32);
    let ok = run(&["ip", "link", "add", &name, "type", "ifb"]).0;
    if ok {
        let _ = run(&["ip", "link", "del", &name]);
    }
    ok
}

/// Third octets handed to tests of this process.
static TAKEN: Mutex<Option<HashSet<u8>>> = Mutex::new(None);

/// Gateway mode turns on `net.ipv4.ip_forward`: saved when the first
/// network of the process is made, restored when the last one goes.
static LIVE: Mutex<(usize, String)> = Mutex::new((0, String::new()));
const FWD: &str = "/proc/sys/net/ipv4/ip_forward";

/// One test's network: bridge, subnet, IPAM dir, namespaces.
struct TestNet {
    name: String,
    bridge: String,
    v4: String,
    gw: IpAddr,
    data: tempfile::TempDir,
    netns: Mutex<Vec<String>>,
}

impl TestNet {
    fn new() -> Self {
        let id = format!("{:08x}", random_u64() as u32);
        let octet = {
            let mut taken = TAKEN.lock().unwrap();
            let taken = taken.get_or_insert_with(HashSet::new);
            let mut used = run(&["ip", "-4", "route", "show", "table", "all"]).1;
            used.push_str(&run(&["ip", "-4", "addr"]).1);
            loop {
                let o = (random_u64() & 0xff) as u8;
                if !taken.contains(&o) && !used.contains(&format!("10.201.{o}.")) {
                    taken.insert(o);
                    break o;
                }
            }
        };
        {
            let mut live = LIVE.lock().unwrap();
            if live.0 == 0 {
                live.1 = std::fs::read_to_string(FWD).unwrap_or_default();
            }
            live.0 += 1;
        }
        Self {
            name: format!("bbw-{id}"),
            bridge: format!("bbw{id}"),
            v4: format!("10.201.{octet}.0/24"),
            gw: format!("10.201.{octet}.1").parse().unwrap(),
            data: tempfile::tempdir().unwrap(),
            netns: Mutex::new(Vec::new()),
        }
    }

    /// The network config, with `bandwidth` as the runtime's capability
    /// argument (none if null).
    fn conf(&self, bandwidth: Value) -> Value {
        let mut conf = json!({
            "cniVersion": "1.1.0",
            "name": self.name,
            "type": "berth-bridge",
            "bridge": self.bridge,
            "subnets": [self.v4],
            "dataDir": self.data.path(),
            "capabilities": {"bandwidth": true},
        });
        if !bandwidth.is_null() {
            conf["runtimeConfig"] = json!({ "bandwidth": bandwidth });
        }
        conf
    }

    fn netns(&self) -> String {
        let name = format!("bbw-{:012x}", random_u64() & 0xffff_ffff_ffff);
        must(&["ip", "netns", "add", &name]);
        self.netns.lock().unwrap().push(name.clone());
        format!("/run/netns/{name}")
    }

    fn reservations(&self) -> usize {
        std::fs::read_dir(self.data.path().join(&self.name))
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<IpAddr>().ok())
                    .count()
            })
            .unwrap_or(0)
    }

    fn veth(&self, cid: &str) -> String {
        host_veth_name(&self.name, cid, "eth0")
    }

    fn ifb(&self, cid: &str) -> String {
        ifb_name(&self.name, cid, "eth0")
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for ns in self.netns.lock().map(|v| v.clone()).unwrap_or_default() {
            let _ = run(&["ip", "netns", "del", &ns]);
        }
        let (_, ports) = run(&["ip", "-o", "link", "show", "master", &self.bridge]);
        for line in ports.lines() {
            if let Some(name) = line.split(": ").nth(1) {
                let _ = run(&["ip", "link", "del", name.split('@').next().unwrap_or(name)]);
            }
        }
        // The ifbs of this network carry its tag prefix in their alias.
        let prefix = format!("berth:{}:", self.name);
        let (_, links) = run(&["ip", "-j", "link", "show", "type", "ifb"]);
        if let Ok(Value::Array(links)) = serde_json::from_str::<Value>(&links) {
            for l in links {
                if l["ifalias"]
                    .as_str()
                    .is_some_and(|a| a.starts_with(&prefix))
                {
                    let _ = run(&["ip", "link", "del", l["ifname"].as_str().unwrap_or("")]);
                }
            }
        }
        let _ = run(&["ip", "link", "del", &self.bridge]);
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        live.0 -= 1;
        if live.0 == 0 && !live.1.is_empty() {
            let _ = std::fs::write(FWD, live.1.trim());
        }
    }
}

fn pod_ip(result: &Value) -> IpAddr {
    result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {result}"))
}

/// `tc -j -d qdisc show dev <dev>`.
fn qdiscs(dev: &str) -> Vec<Value> {
    let out = must(&["tc", "-j", "-d", "qdisc", "show", "dev", dev]);
    match serde_json::from_str(&out) {
        Ok(Value::Array(q)) => q,
        other => panic!("tc qdisc show dev {dev}: {other:?} from {out}"),
    }
}

/// The root tbf of `dev` as tc reports it: (rate B/s, burst B, latency µs).
fn root_tbf(dev: &str) -> (u64, u64, u64) {
    let all = qdiscs(dev);
    let q = all
        .iter()
        .find(|q| q["root"] == true)
        .unwrap_or_else(|| panic!("no root qdisc on {dev}: {all:?}"));
    assert_eq!(q["kind"], "tbf", "{dev}: {q}");
    let o = &q["options"];
    let burst = o["burst"]
        .as_str()
        .and_then(|b| b.split('b').next())
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("burst in {o}"));
    (
        o["rate"].as_u64().unwrap(),
        burst,
        o["lat"].as_u64().unwrap(),
    )
}

/// The tbf's parameters match rate and burst (bits) with the reference
/// plugin's 25 ms of queue; tc derives burst and latency from buffer and
/// limit, rounding to the tick.
fn assert_tbf(dev: &str, rate_bits: u64, burst_bits: u64) {
    let (rate, burst, lat) = root_tbf(dev);
    assert_eq!(rate, rate_bits / 8, "{dev} rate");
    assert!(
        burst.abs_diff(burst_bits / 8) <= 2,
        "{dev} burst {burst}, want {}",
        burst_bits / 8
    );
    assert!(lat.abs_diff(25_000) <= 5, "{dev} latency {lat} µs");
}

/// Sends `n` bytes over a fresh connection to `to` (from the namespace
/// `from`, or the host) while `listener` receives them; returns the
/// receiver's rate in bits per second, from the first byte to the last.
fn transfer_rate(listener: TcpListener, from: Option<&str>, to: SocketAddr, n: usize) -> f64 {
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0usize;
        let mut first = None;
        while got < n {
            let k = conn.read(&mut buf).unwrap();
            assert!(k > 0, "connection closed after {got} of {n} bytes");
            first.get_or_insert_with(Instant::now);
            got += k;
        }
        first.unwrap().elapsed()
    });
    let send = move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
        let chunk = vec![0x5au8; 64 * 1024];
        let mut sent = 0;
        while sent < n {
            let k = chunk.len().min(n - sent);
            s.write_all(&chunk[..k]).unwrap();
            sent += k;
        }
        s.flush().unwrap();
    };
    match from {
        Some(ns) => in_netns(ns, send),
        None => send(),
    }
    let took = receiver.join().unwrap();
    n as f64 * 8.0 / took.as_secs_f64().max(1e-6)
}

fn listen_in(ns: &str) -> (TcpListener, u16) {
    in_netns(ns, || {
        let l = TcpListener::bind(("0.0.0.0", 0)).unwrap();
        let p = l.local_addr().unwrap().port();
        (l, p)
    })
}

fn listen_on(ip: IpAddr) -> (TcpListener, u16) {
    let l = TcpListener::bind((ip, 0)).unwrap();
    let p = l.local_addr().unwrap().port();
    (l, p)
}

/// Asserts a shaped rate: clearly limited (under twice the limit) yet
/// flowing (over a fifth of it).
fn assert_shaped(what: &str, rate: f64, limit: u64) {
    let limit = limit as f64;
    assert!(
        rate < 2.0 * limit && rate > 0.2 * limit,
        "{what}: {:.2} Mbit/s with a limit of {:.2} Mbit/s",
        rate / 1e6,
        limit / 1e6
    );
}

#[test]
fn ingress_is_shaped_on_the_host_veth() {
    if !root_or_skip("ingress_is_shaped_on_the_host_veth") {
        return;
    }
    let net = TestNet::new();
    let conf = net.conf(json!({"ingressRate": RATE, "ingressBurst": BURST}));
    let (ns, free_ns) = (net.netns(), net.netns());
    let res = cni("ADD", &conf, "in-a", Some(&ns)).expect_ok().json();
    let free = cni("ADD", &net.conf(Value::Null), "in-b", Some(&free_ns))
        .expect_ok()
        .json();
    assert_eq!(
        res["interfaces"].as_array().unwrap().len(),
        3,
        "no ifb: {res}"
    );
    assert_tbf(&net.veth("in-a"), RATE, BURST);
    assert!(!link_exists(&net.ifb("in-a")), "ingress alone needs no ifb");
    // The unshaped pod's veth has no tbf.
    let plain = qdiscs(&net.veth("in-b"));
    assert!(plain.iter().all(|q| q["kind"] != "tbf"), "{plain:?}");
    cni("CHECK", &conf, "in-a", Some(&ns)).expect_ok();

    // Host to pod: limited; to the unshaped pod: far faster.
    let (l, port) = listen_in(&ns);
    let shaped = transfer_rate(l, None, SocketAddr::new(pod_ip(&res), port), TRANSFER);
    assert_shaped("host -> shaped pod", shaped, RATE);
    let (l, port) = listen_in(&free_ns);
    let unshaped = transfer_rate(l, None, SocketAddr::new(pod_ip(&free), port), TRANSFER);
    assert!(
        unshaped > 3.0 * RATE as f64,
        "unshaped pod only got {:.2} Mbit/s",
        unshaped / 1e6
    );
    // Pod to host is not shaped.
    let (l, port) = listen_on(net.gw);
    let up = transfer_rate(l, Some(&ns), SocketAddr::new(net.gw, port), TRANSFER);
    assert!(up > 3.0 * RATE as f64, "egress got {:.2} Mbit/s", up / 1e6);

    // CHECK sees a changed qdisc (103).
    must(&[
        "tc",
        "qdisc",
        "replace",
        "dev",
        &net.veth("in-a"),
        "root",
        "tbf",
        "rate",
        "1mbit",
        "burst",
        "20kb",
        "latency",
        "25ms",
    ]);
    let (code, msg) = cni("CHECK", &conf, "in-a", Some(&ns)).error();
    assert_eq!(code, 103, "{msg}");
    assert!(msg.contains("tbf"), "{msg}");

    for _ in 0..2 {
        cni("DEL", &conf, "in-a", Some(&ns)).expect_ok();
        cni("DEL", &net.conf(Value::Null), "in-b", Some(&free_ns)).expect_ok();
    }
    assert!(!link_exists(&net.veth("in-a")));
    assert_eq!(net.reservations(), 0);
}

#[test]
fn egress_is_shaped_through_an_ifb() {
    if !root_or_skip("egress_is_shaped_through_an_ifb") {
        return;
    }
    let net = TestNet::new();
    let conf = net.conf(json!({"egressRate": RATE, "egressBurst": BURST,
                               "ingressRate": 2 * RATE, "ingressBurst": BURST}));
    let ns = net.netns();
    let ifb = net.ifb("eg-a");
    let veth = net.veth("eg-a");
    if !kernel_has_ifb() {
        // Not shaping silently: the ADD fails with a clear error, and
        // leaves nothing behind.
        let (code, msg) = cni("ADD", &conf, "eg-a", Some(&ns)).error();
        assert_eq!(code, 105, "{msg}");
        assert!(msg.contains("ifb"), "{msg}");
        assert!(!link_exists(&veth));
        assert_eq!(net.reservations(), 0);
        require(
            "egress_is_shaped_through_an_ifb",
            false,
            "needs ifb in the kernel",
        );
        return;
    }
    let res = cni("ADD", &conf, "eg-a", Some(&ns)).expect_ok().json();
    let ifaces = res["interfaces"].as_array().unwrap();
    assert_eq!(ifaces.len(), 4, "{res}");
    assert_eq!(ifaces[3]["name"], ifb.as_str());
    assert_eq!(res["ips"][0]["interface"], 2);

    // The ifb: up, tagged, with the veth's MTU; its root tbf; the veth's
    // ingress qdisc and the filter redirecting to the ifb.
    let link: Value =
        serde_json::from_str(&must(&["ip", "-j", "-d", "link", "show", &ifb])).unwrap();
    let link = &link[0];
    assert_eq!(link["linkinfo"]["info_kind"], "ifb", "{link}");
    assert_eq!(link["mtu"], 1500);
    assert_eq!(link["txqlen"], 1000);
    assert!(
        link["flags"].as_array().unwrap().contains(&json!("UP")),
        "{link}"
    );
    assert_eq!(link["ifalias"], format!("berth:{}:eg-a/eth0", net.name));
    assert_tbf(&ifb, RATE, BURST);
    assert_tbf(&veth, 2 * RATE, BURST);
    assert!(qdiscs(&veth).iter().any(|q| q["kind"] == "ingress"));
    let filters = must(&["tc", "-j", "filter", "show", "dev", &veth, "ingress"]);
    assert!(filters.contains("\"kind\":\"u32\""), "{filters}");
    assert!(
        filters.contains(&format!("\"to_dev\":\"{ifb}\"")),
        "{filters}"
    );
    assert!(filters.contains("\"protocol\":\"all\""), "{filters}");
    cni("CHECK", &conf, "eg-a", Some(&ns)).expect_ok();

    // Pod to host: limited; host to pod at its own, higher limit.
    let (l, port) = listen_on(net.gw);
    let up = transfer_rate(l, Some(&ns), SocketAddr::new(net.gw, port), TRANSFER);
    assert_shaped("shaped pod -> host", up, RATE);
    let (l, port) = listen_in(&ns);
    let down = transfer_rate(l, None, SocketAddr::new(pod_ip(&res), port), 2 * TRANSFER);
    assert_shaped("host -> shaped pod", down, 2 * RATE);

    // CHECK notices the redirect gone.
    must(&["tc", "qdisc", "del", "dev", &veth, "ingress"]);
    let (code, msg) = cni("CHECK", &conf, "eg-a", Some(&ns)).error();
    assert_eq!(code, 103, "{msg}");
    assert!(msg.contains("redirected"), "{msg}");

    // DEL (without runtimeConfig, as after a restart) removes the ifb;
    // again, with everything gone, is fine.
    for _ in 0..2 {
        cni("DEL", &net.conf(Value::Null), "eg-a", Some(&ns)).expect_ok();
        assert!(!link_exists(&ifb));
        assert!(!link_exists(&veth));
    }
    assert_eq!(net.reservations(), 0);
}

#[test]
fn retried_add_conflicts_and_gc() {
    if !root_or_skip("retried_add_conflicts_and_gc") {
        return;
    }
    if !require(
        "retried_add_conflicts_and_gc",
        kernel_has_ifb(),
        "needs ifb in the kernel",
    ) {
        return;
    }
    let net = TestNet::new();
    let conf = net.conf(json!({"egressRate": RATE, "egressBurst": BURST}));
    let (ns_a, ns_b, ns_c) = (net.netns(), net.netns(), net.netns());

    // A retried ADD replaces its own ifb.
    cni("ADD", &conf, "gc-a", Some(&ns_a)).expect_ok();
    cni("ADD", &conf, "gc-a", Some(&ns_a)).expect_ok();
    cni("CHECK", &conf, "gc-a", Some(&ns_a)).expect_ok();

    // An ifb name taken by a link that is not ours: 104, the link left
    // alone, and the ADD undone.
    let taken = net.ifb("gc-c");
    must(&["ip", "link", "add", &taken, "type", "bridge"]);
    let (code, msg) = cni("ADD", &conf, "gc-c", Some(&ns_c)).error();
    assert_eq!(code, 104, "{msg}");
    assert!(link_exists(&taken));
    assert!(!link_exists(&net.veth("gc-c")));
    assert_eq!(net.reservations(), 1);
    cni("DEL", &conf, "gc-c", Some(&ns_c)).expect_ok();
    assert!(link_exists(&taken), "DEL leaves a link that is not ours");
    must(&["ip", "link", "del", &taken]);

    // GC deletes the ifbs of attachments that are not valid any more.
    cni("ADD", &conf, "gc-b", Some(&ns_b)).expect_ok();
    let mut gc = net.conf(Value::Null);
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "gc-b", "ifname": "eth0"}]);
    let gc_out = Command::new(BIN)
        .env("CNI_COMMAND", "GC")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(gc.to_string().as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(gc_out.status.success(), "{gc_out:?}");
    assert!(!link_exists(&net.ifb("gc-a")), "stale ifb deleted");
    assert!(link_exists(&net.ifb("gc-b")), "valid ifb kept");
    cni("CHECK", &conf, "gc-b", Some(&ns_b)).expect_ok();

    cni("DEL", &conf, "gc-a", Some(&ns_a)).expect_ok();
    cni("DEL", &conf, "gc-b", Some(&ns_b)).expect_ok();
    assert!(!link_exists(&net.ifb("gc-b")));
    assert_eq!(net.reservations(), 0);
}

#[test]
fn bad_limits_are_refused_and_leave_nothing() {
    if !root_or_skip("bad_limits_are_refused_and_leave_nothing") {
        return;
    }
    let net = TestNet::new();
    let ns = net.netns();
    for (bw, want) in [
        (
            json!({"ingressRate": -1, "ingressBurst": BURST}),
            "non-negative",
        ),
        (
            json!({"egressRate": 0, "egressBurst": BURST}),
            "egressRate must be too",
        ),
        (
            json!({"ingressRate": RATE, "ingressBurst": 0}),
            "ingressBurst must be too",
        ),
        (
            json!({"egressRate": 10_000_000_000_000_000u64, "egressBurst": BURST}),
            "above the maximum",
        ),
        (
            json!({"ingressRate": RATE, "ingressBurst": 40_000_000_000u64}),
            "4 GB",
        ),
        (
            json!({"ingressRate": RATE, "ingressBurst": 800}),
            "full-size frame",
        ),
        (
            json!({"ingressRate": 1e30, "ingressBurst": BURST}),
            "non-negative",
        ),
    ] {
        let (code, msg) = cni("ADD", &net.conf(bw.clone()), "bad", Some(&ns)).error();
        assert_eq!(code, 7, "{bw}: {msg}");
        assert!(msg.contains(want), "{bw}: {msg}");
    }
    assert!(!link_exists(&net.veth("bad")));
    assert!(!link_exists(&net.ifb("bad")));
    assert_eq!(net.reservations(), 0);
}
