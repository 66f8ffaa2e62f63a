//! Pod bandwidth annotations end to end: berthd turns
//! `kubernetes.io/ingress-bandwidth` / `egress-bandwidth` into the CNI
//! `bandwidth` capability (bursts of 2^32-1 bits, as containerd sends
//! them), berth-bridge shapes the pod with tc qdiscs, and traffic to and
//! from the pod really is limited. On the test's own bridge and subnet
//! (`NetLease`), with ephemeral ports; the daemon and the lease clean up
//! when the test ends, also when it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_cli::client::CriClient;
use berth_e2e::netns::{bridge_ports, in_netns};
use berth_e2e::podnet::{Plugins, env, pod_config};
use berth_e2e::{Berthd, root_or_skip};
use k8s_cri::v1::*;
use serde_json::Value;
use tonic::Code;

/// The annotations' rates: 1 Mbit/s to the pod, 800 kbit/s from it (low,
/// so the bucket to drain first stays small).
const INGRESS: u64 = 1_000_000;
const EGRESS: u64 = 800_000;
/// Bytes measured after the bucket: 2 s at the rate.
fn two_seconds(rate_bits: u64) -> usize {
    (rate_bits / 4) as usize
}
/// The TCP payload that passes at full speed first. A burst of 2^32-1
/// bits makes a TBF buffer that saturates at 2^32-1 scheduler ticks of
/// 64 ns, ~275 s worth of the rate (the reference plugin's arithmetic
/// wraps to a bucket of the same order: kubernetes/kubernetes#90838); the
/// qdisc counts frames, 1514 bytes per 1448 of payload (TCP timestamps
/// on). Plus 1% of the bucket, in case the payload per frame is larger.
fn unshaped_payload(rate_bits: u64) -> usize {
    let bucket = u128::from(u32::MAX) * 64 * u128::from(rate_bits / 8) / 1_000_000_000;
    (bucket * 1448 / 1514 + bucket / 100) as usize
}

async fn run(c: &mut CriClient, config: PodSandboxConfig) -> Result<String, tonic::Status> {
    c.runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .map(|r| r.into_inner().pod_sandbox_id)
}

async fn ip(c: &mut CriClient, id: &str) -> IpAddr {
    c.runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .network
        .unwrap()
        .ip
        .parse()
        .unwrap()
}

async fn stop_and_remove(c: &mut CriClient, id: &str) {
    c.runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .unwrap();
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

fn tc_json(args: &[&str]) -> Vec<Value> {
    let out = Command::new("tc").arg("-j").args(args).output().unwrap();
    assert!(out.status.success(), "tc {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The rate (bytes/s) of `dev`'s root tbf.
fn root_tbf_rate(dev: &str) -> u64 {
    let q = tc_json(&["qdisc", "show", "dev", dev]);
    let root = q.iter().find(|q| q["root"] == true).unwrap();
    assert_eq!(root["kind"], "tbf", "{dev}: {q:?}");
    root["options"]["rate"].as_u64().unwrap()
}

/// berth-bridge's ifb devices tagged for the pod `id`.
fn ifbs_of(id: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-j", "link", "show", "type", "ifb"])
        .output()
        .unwrap();
    let links: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    links
        .iter()
        .filter(|l| l["ifalias"].as_str().is_some_and(|a| a.contains(id)))
        .map(|l| l["ifname"].as_str().unwrap().to_owned())
        .collect()
}

/// Sends `skip + n` bytes to `to` (from the pod's netns, or the host)
/// while `listener` receives them; returns the rate in bits/s of the last
/// `n` bytes (the first `skip` drain the bucket).
fn tail_rate(
    listener: TcpListener,
    from: Option<&Path>,
    to: SocketAddr,
    skip: usize,
    n: usize,
) -> f64 {
    let total = skip + n;
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let (mut got, mut start) = (0usize, None);
        while got < total {
            let k = conn.read(&mut buf).unwrap();
            assert!(k > 0, "closed after {got} of {total} bytes");
            got += k;
            if got >= skip && start.is_none() {
                start = Some((Instant::now(), got));
            }
        }
        let (t, at) = start.unwrap();
        (got - at) as f64 * 8.0 / t.elapsed().as_secs_f64().max(1e-6)
    });
    let send = move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
        let chunk = vec![0xa5u8; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            let k = chunk.len().min(total - sent);
            s.write_all(&chunk[..k]).unwrap();
            sent += k;
        }
    };
    match from {
        Some(ns) => in_netns(ns, send),
        None => send(),
    }
    receiver.join().unwrap()
}

/// Deletes the ifb devices berth-bridge made on the test's network when
/// the test ends, also when it fails before stopping its pods.
struct IfbGuard(String);

impl Drop for IfbGuard {
    fn drop(&mut self) {
        let prefix = format!("berth:{}:", self.0);
        let out = Command::new("ip")
            .args(["-j", "link", "show", "type", "ifb"])
            .output();
        let links: Vec<Value> = out
            .ok()
            .and_then(|o| serde_json::from_slice(&o.stdout).ok())
            .unwrap_or_default();
        for l in links {
            if l["ifalias"]
                .as_str()
                .is_some_and(|a| a.starts_with(&prefix))
            {
                let _ = Command::new("ip")
                    .args(["link", "del", l["ifname"].as_str().unwrap_or_default()])
                    .status();
            }
        }
    }
}

fn assert_limited(what: &str, rate: f64, limit: u64) {
    let limit = limit as f64;
    assert!(
        rate < 2.0 * limit && rate > 0.2 * limit,
        "{what}: {:.2} Mbit/s with a limit of {:.2} Mbit/s",
        rate / 1e6,
        limit / 1e6
    );
}

#[tokio::test]
async fn bandwidth_annotations_shape_the_pod() {
    if !root_or_skip("bandwidth_annotations_shape_the_pod") {
        return;
    }
    let e = env("podbw", Plugins::Berth);
    // The network is named after its bridge (podnet's conflist).
    let _ifbs = IfbGuard(e.net.lease.bridge.clone());
    let mut c = e.d.client().await;

    // Garbage is refused before anything is set up.
    for bad in ["10X", "-1M", "500", "2P"] {
        let mut cfg = pod_config("bw-bad");
        cfg.annotations
            .insert("kubernetes.io/egress-bandwidth".into(), bad.into());
        let err = run(&mut c, cfg).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}: {err}");
        assert!(err.message().contains("egress-bandwidth"), "{err}");
    }
    assert!(bridge_ports(&e.net.lease.bridge).is_empty());

    let mut cfg = pod_config("bw");
    cfg.annotations
        .insert("kubernetes.io/ingress-bandwidth".into(), "1M".into());
    cfg.annotations
        .insert("kubernetes.io/egress-bandwidth".into(), "800k".into());
    let id = run(&mut c, cfg).await.unwrap();
    let pod_ip = ip(&mut c, &id).await;
    let ports = bridge_ports(&e.net.lease.bridge);
    let [veth] = ports.as_slice() else {
        panic!("one veth expected: {ports:?}")
    };
    let ifbs = ifbs_of(&id);
    let [ifb] = ifbs.as_slice() else {
        panic!("one ifb expected for {id}: {ifbs:?}")
    };
    assert_eq!(root_tbf_rate(veth), INGRESS / 8);
    assert_eq!(root_tbf_rate(ifb), EGRESS / 8);

    // Host to pod, then pod to host (to the bridge's gateway address).
    let ns = netns_path(&e.d, &id);
    let l = {
        let ns = ns.clone();
        in_netns(&ns, || TcpListener::bind(("0.0.0.0", 0)).unwrap())
    };
    let to = SocketAddr::new(pod_ip, l.local_addr().unwrap().port());
    let down = tail_rate(l, None, to, unshaped_payload(INGRESS), two_seconds(INGRESS));
    assert_limited("host -> pod", down, INGRESS);
    let gw: IpAddr = format!("{}1", e.net.lease.prefix).parse().unwrap();
    let l = TcpListener::bind((gw, 0)).unwrap();
    let to = SocketAddr::new(gw, l.local_addr().unwrap().port());
    let up = tail_rate(
        l,
        Some(&ns),
        to,
        unshaped_payload(EGRESS),
        two_seconds(EGRESS),
    );
    assert_limited("pod -> host", up, EGRESS);

    // Stopping the pod removes the ifb with the veth.
    stop_and_remove(&mut c, &id).await;
    assert!(ifbs_of(&id).is_empty(), "ifb left: {:?}", ifbs_of(&id));
    assert!(bridge_ports(&e.net.lease.bridge).is_empty());

    // A pod without annotations is not shaped.
    let id = run(&mut c, pod_config("bw-free")).await.unwrap();
    let ports = bridge_ports(&e.net.lease.bridge);
    let q = tc_json(&["qdisc", "show", "dev", &ports[0]]);
    assert!(q.iter().all(|q| q["kind"] != "tbf"), "{q:?}");
    assert!(ifbs_of(&id).is_empty());
    stop_and_remove(&mut c, &id).await;
}
