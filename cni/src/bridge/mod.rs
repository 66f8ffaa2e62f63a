//! berth-bridge: berth's own CNI plugin, the out-of-the-box pod network.
//!
//! One plugin does what the reference chain of `bridge`, `host-local`,
//! `portmap` and `bandwidth` does: a Linux bridge with the gateway addresses, a
//! veth pair per attachment, host-local style IPAM (dual stack from one
//! config), IP masquerade and host port mappings, the last two programmed
//! into nftables over netlink (no `nft` or `iptables` binary is run), and
//! traffic shaping with tc qdiscs over rtnetlink (no `tc` binary).
//!
//! # Configuration
//!
//! ```json
//! {
//!   "cniVersion": "1.1.0",
//!   "name": "berth",
//!   "plugins": [{
//!     "type": "berth-bridge",
//!     "bridge": "berth0",
//!     "subnets": ["10.89.0.0/16", "fd00:89::/64"],
//!     "gateway": true,
//!     "ipMasq": true,
//!     "hairpin": true,
//!     "mtu": 1500,
//!     "dataDir": "/var/lib/berth/cni/networks",
//!     "nftTable": "berth-bridge",
//!     "lockTimeoutMs": 10000,
//!     "dns": {"nameservers": ["10.89.0.1"]},
//!     "capabilities": {"portMappings": true, "ipRanges": true, "bandwidth": true}
//!   }]
//! }
//! ```
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `bridge` | `berth0` | the bridge; created (up, fixed MAC) if missing; a non-bridge link of that name is an error |
//! | `subnets` | required | one IPv4 and/or one IPv6 CIDR; the first host address is the gateway, pods get the following ones (never the network, gateway or IPv4 broadcast address) |
//! | `gateway` | `true` | put the gateway addresses on the bridge, default routes via them in the pod, enable IP forwarding (`net.ipv4.ip_forward`, and `net.ipv6.conf.all.forwarding` with an IPv6 subnet) |
//! | `ipMasq` | `false` | masquerade traffic from a subnet to destinations outside it |
//! | `hairpin` (or `hairpinMode`) | `true` | hairpin mode on the bridge ports |
//! | `mtu` | `1500` | MTU of the bridge and both veth ends |
//! | `dataDir` | `/var/lib/berth/cni/networks` | IPAM state, in `<dataDir>/<name>/` (see [`ipam`]) |
//! | `nftTable` | `berth-bridge` | the `inet` nftables table berth-bridge owns |
//! | `lockTimeoutMs` | `10000` | wait for the network's IPAM lock; then error 11 (try again later) |
//! | `dns` | none | passed through to the result |
//!
//! `runtimeConfig.portMappings` (capability `portMappings`): `hostPort`,
//! `containerPort`, `protocol` (`tcp` default, `udp`, `sctp`), optional
//! `hostIP` (only that host address is mapped; unset, `0.0.0.0` or `::` map
//! every local address). See [`firewall`] for the rules.
//!
//! `runtimeConfig.bandwidth` (capability `bandwidth`, as the reference
//! bandwidth plugin reads it): `ingressRate`/`egressRate` in bits/s and
//! `ingressBurst`/`egressBurst` in bits; a direction is shaped when both
//! its rate and burst are non-zero. Ingress (to the pod) is a TBF qdisc on
//! the host veth; egress (from the pod) redirects the host veth's ingress
//! to an ifb device ([`ifb_name`], `bwp` + hash) with a TBF qdisc. See
//! [`shaping`] and, for the refused values and the TBF arithmetic,
//! [`bandwidth`]. `unshapedSubnets`/`shapedSubnets` are refused.
//!
//! `runtimeConfig.ipRanges` (capability `ipRanges`, as host-local reads it):
//! one range set per address family, one `{"subnet": CIDR}` range each;
//! these subnets replace `subnets` for the invocation (berthd passes the
//! node's pod CIDRs this way). Range bounds and gateways are refused.
//!
//! # Commands
//!
//! - ADD: bridge (+ addresses, sysctls) → addresses from IPAM and the nftables
//!   rules, under the network's lock → a veth pair whose host end
//!   ([`host_veth_name`], alias = the attachment tag) joins the bridge and
//!   whose peer is created directly in the pod's namespace as `CNI_IFNAME`
//!   (MAC `0a:58:<IPv4>`, MTU) → in the namespace: `disable_ipv6=0` when IPv6
//!   is configured, addresses (IPv6 without DAD), link up, default routes.
//!   The result lists bridge, host veth and pod interface (with its sandbox),
//!   the addresses (interface 2, with gateway), the routes and `dns`. An ADD
//!   retried for the same container ID and ifname reuses its addresses and
//!   recreates its veth. Then the shaping (qdiscs, ifb device, redirect);
//!   the ifb device is listed last in the result. On failure, what this
//!   ADD set up is undone.
//! - DEL: removes the attachment's nftables rules, its ifb device, its host
//!   veth (which takes the pod end and the veth's qdiscs with it) and its
//!   IPAM reservations. Anything already gone is fine; `CNI_NETNS` is not
//!   needed.
//! - CHECK: the reservations (and `prevResult`'s addresses) match, the bridge
//!   and host veth are in place, the pod interface is up with its addresses
//!   and default routes, the nftables rules are there, and so are the
//!   shaping qdiscs (with the parameters ADD set), redirect and ifb device.
//! - STATUS: the IPAM directory is writable, no pool is exhausted, and
//!   nf_tables answers when masquerade is on; else error 50.
//! - GC: releases reservations and deletes nftables rules and ifb devices
//!   of attachments of this network not in `cni.dev/valid-attachments`.
//! - VERSION: 0.4.0, 1.0.0, 1.1.0.
//!
//! # Errors
//!
//! CNI error JSON on stdout: 3 (netns missing), 4 (environment), 7 (config),
//! 11 (IPAM lock timeout), 50 (STATUS: not ready), and plugin codes 100 (pool
//! exhausted), 101 (netlink), 102 (nftables), 103 (CHECK mismatch), 104
//! (interface name taken by something that is not berth-bridge's), 105
//! (traffic shaping failed, e.g. a kernel without ifb for egress shaping).

pub mod bandwidth;
pub mod config;
pub mod error;
pub mod firewall;
pub mod ipam;
pub mod link;
pub mod nft;
pub mod shaping;
pub mod tc;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

use rscni_plugin::cni::{Cni, Plugin};
use rscni_plugin::error::Error as CniError;
use rscni_plugin::types::{Args, CNIResult, Interface, IpConfig, Route};
use rscni_plugin::version::SpecVersion;
use rscni_types::ipnet::IpNet;
use rtnetlink::Handle;

pub use config::{BridgeConfig, attachment_tag, host_veth_name, ifb_name};
pub use error::BridgeError;

use ipam::{IpamStore, Owner};
use link::{Link, Netns};

/// CNI versions berth-bridge speaks.
pub fn supported_versions() -> Vec<SpecVersion> {
    vec![
        SpecVersion::new(0, 4, 0),
        SpecVersion::new(1, 0, 0),
        SpecVersion::new(1, 1, 0),
    ]
}

/// Runs the plugin on the process's environment and stdio (the `main` of the
/// `berth-bridge` binary). The error has already been written to stdout as
/// CNI error JSON when this returns `Err`.
pub fn run() -> Result<(), CniError> {
    Plugin::new(SpecVersion::new(1, 1, 0), supported_versions())
        .msg(concat!(
            "berth-bridge ",
            env!("CARGO_PKG_VERSION"),
            ": berth's bridge + IPAM + port mapping CNI plugin"
        ))
        .run(&BerthBridge)
}

/// The [`Cni`] implementation.
#[derive(Debug, Default, Clone, Copy)]
pub struct BerthBridge;

impl Cni for BerthBridge {
    fn add(&self, args: Args) -> Result<CNIResult, CniError> {
        cmd_add(&args).map_err(log_error)
    }

    fn del(&self, args: Args) -> Result<(), CniError> {
        cmd_del(&args).map_err(log_error)
    }

    fn check(&self, args: Args) -> Result<(), CniError> {
        cmd_check(&args).map_err(log_error)
    }

    fn status(&self, args: Args) -> Result<(), CniError> {
        cmd_status(&args).map_err(log_error)
    }

    fn gc(&self, args: Args) -> Result<(), CniError> {
        cmd_gc(&args).map_err(log_error)
    }
}

fn log_error(e: BridgeError) -> CniError {
    tracing::debug!(error = %e, code = e.code(), "berth-bridge failed");
    e.into()
}

/// The attachment an invocation is about.
struct Attachment {
    cfg: BridgeConfig,
    ifname: String,
    owner: Owner,
    tag: String,
    host_veth: String,
    ifb: String,
}

impl Attachment {
    fn from_args(args: &Args) -> Result<Self, BridgeError> {
        let cfg = BridgeConfig::from_netconf(args.config())?;
        let container_id = args
            .container_id()
            .map(|c| c.to_string())
            .ok_or_else(|| BridgeError::Env("CNI_CONTAINERID is required".into()))?;
        let ifname = args
            .ifname()
            .map(|i| i.to_string())
            .ok_or_else(|| BridgeError::Env("CNI_IFNAME is required".into()))?;
        Ok(Self {
            owner: Owner::new(&container_id, &ifname),
            tag: cfg.attachment_tag(&container_id, &ifname),
            host_veth: host_veth_name(&cfg.network, &container_id, &ifname),
            ifb: ifb_name(&cfg.network, &container_id, &ifname),
            cfg,
            ifname,
        })
    }

    /// Whether a host link with our deterministic name is ours: tagged with
    /// our alias, or untagged (an ADD that died between creating and tagging).
    fn owns(&self, link: &Link) -> bool {
        link.is("veth")
            && link
                .alias
                .as_deref()
                .is_none_or(|a| a.is_empty() || a == self.tag)
    }
}

fn netns_path(args: &Args) -> Result<PathBuf, BridgeError> {
    args.netns()
        .cloned()
        .ok_or_else(|| BridgeError::Env("CNI_NETNS is required".into()))
}

fn cmd_add(args: &Args) -> Result<CNIResult, BridgeError> {
    let att = Attachment::from_args(args)?;
    let netns = Netns::open(&netns_path(args)?)?;
    let (att, netns) = (&att, &netns);
    let cfg = &att.cfg;

    link::with_rtnetlink(|h| async move {
        let bridge = setup_bridge(&h, cfg).await?;

        // Addresses and nftables rules under the network's lock.
        let allocations = {
            let store = IpamStore::lock(&cfg.network_dir(), cfg.lock_timeout)?;
            let allocations = store.allocate(&cfg.pools(), &att.owner)?;
            let ips: Vec<IpAddr> = allocations.iter().map(|a| a.ip).collect();
            if cfg.wants_nft()
                && let Err(e) = firewall::setup(cfg, &att.tag, &ips)
            {
                release_fresh(&store, &allocations);
                return Err(e);
            }
            allocations
        };
        let ips: Vec<IpAddr> = allocations.iter().map(|a| a.ip).collect();

        let attached = async {
            let (host, pod) = setup_attachment(&h, att, netns, &bridge, &ips).await?;
            let ifb = shaping::apply(&h, &cfg.shaping, &host, &att.ifb, &att.tag, cfg.mtu).await?;
            Ok::<_, BridgeError>((host, pod, ifb))
        }
        .await;
        match attached {
            Ok((host, pod, ifb)) => Ok(add_result(
                att,
                netns,
                &bridge,
                &host,
                &pod,
                ifb.as_ref(),
                &ips,
            )),
            Err(e) => {
                // Undo this ADD: links, rules, fresh reservations.
                if let Ok(Some(host)) = link::get_link(&h, &att.host_veth).await
                    && att.owns(&host)
                {
                    let _ = link::delete_link(&h, host.index).await;
                }
                let _ = shaping::teardown(&h, &att.ifb, &att.tag).await;
                if cfg.wants_nft() {
                    let _ = firewall::teardown(cfg, &att.tag);
                }
                if let Ok(store) = IpamStore::lock(&cfg.network_dir(), cfg.lock_timeout) {
                    release_fresh(&store, &allocations);
                }
                Err(e)
            }
        }
    })
}

fn release_fresh(store: &IpamStore, allocations: &[ipam::Allocation]) {
    let fresh: Vec<IpAddr> = allocations
        .iter()
        .filter(|a| a.fresh)
        .map(|a| a.ip)
        .collect();
    if let Err(e) = store.release_ips(&fresh) {
        tracing::warn!(error = %e, "releasing addresses of a failed ADD");
    }
}

/// The bridge, its gateway addresses and the host sysctls.
async fn setup_bridge(h: &Handle, cfg: &BridgeConfig) -> Result<Link, BridgeError> {
    let bridge = link::ensure_bridge(h, &cfg.bridge, cfg.mtu).await?;
    if cfg.v6.is_some() {
        link::sysctl(&["net", "ipv6", "conf", &cfg.bridge, "disable_ipv6"], "0")?;
    }
    if cfg.gateway {
        for pool in cfg.pools() {
            link::ensure_address(h, bridge.index, pool.with_prefix(pool.gateway)).await?;
        }
        if cfg.v4.is_some() {
            link::sysctl(&["net", "ipv4", "ip_forward"], "1")?;
        }
        if cfg.v6.is_some() {
            link::sysctl(&["net", "ipv6", "conf", "all", "forwarding"], "1")?;
        }
    }
    if cfg.v4.is_some() && !cfg.port_mappings.is_empty() {
        // 127.0.0.1:<hostPort> from the host is DNATed out of the bridge.
        link::sysctl(&["net", "ipv4", "conf", &cfg.bridge, "route_localnet"], "1")?;
    }
    Ok(bridge)
}

/// The veth pair and the pod side. Returns (host end, pod end).
async fn setup_attachment(
    h: &Handle,
    att: &Attachment,
    netns: &Netns,
    bridge: &Link,
    ips: &[IpAddr],
) -> Result<(Link, Link), BridgeError> {
    let cfg = &att.cfg;
    // A retried ADD: replace our own leftover; refuse anything else.
    if let Some(existing) = link::get_link(h, &att.host_veth).await? {
        if !att.owns(&existing) {
            return Err(BridgeError::Conflict(format!(
                "link {} exists and is not berth-bridge's veth for {}",
                att.host_veth, att.tag
            )));
        }
        link::delete_link(h, existing.index).await?;
    }
    link::create_veth(
        h,
        &att.host_veth,
        &att.ifname,
        netns,
        bridge.index,
        cfg.mtu,
        link::pod_mac(ips),
    )
    .await?;
    let host = link::get_link(h, &att.host_veth)
        .await?
        .ok_or_else(|| BridgeError::netlink("creating the veth pair", "host end vanished"))?;
    link::finish_host_veth(h, host.index, &att.tag, cfg.hairpin).await?;

    let ifname = att.ifname.clone();
    let addrs: Vec<IpNet> = ips
        .iter()
        .filter_map(|ip| cfg.pool_of(*ip).map(|p| p.with_prefix(*ip)))
        .collect();
    let gateways: Vec<IpAddr> = if cfg.gateway {
        cfg.pools().iter().map(|p| p.gateway).collect()
    } else {
        Vec::new()
    };
    let v6 = cfg.v6.is_some();
    let pod = netns.run(move || {
        if v6 {
            link::sysctl(&["net", "ipv6", "conf", &ifname, "disable_ipv6"], "0")?;
        }
        link::with_rtnetlink(|h| async move {
            let pod = link::get_link(&h, &ifname).await?.ok_or_else(|| {
                BridgeError::netlink(format!("configuring {ifname}"), "not found in the netns")
            })?;
            for addr in &addrs {
                link::ensure_address(&h, pod.index, *addr).await?;
            }
            link::set_up(&h, pod.index).await?;
            for gw in &gateways {
                link::ensure_default_route(&h, pod.index, *gw).await?;
            }
            Ok(pod)
        })
    })?;
    Ok((host, pod))
}

fn add_result(
    att: &Attachment,
    netns: &Netns,
    bridge: &Link,
    host: &Link,
    pod: &Link,
    ifb: Option<&Link>,
    ips: &[IpAddr],
) -> CNIResult {
    let cfg = &att.cfg;
    let iface = |name: &str, mac: &str, sandbox: Option<String>| Interface {
        name: name.to_string(),
        mac: mac.to_string(),
        mtu: None,
        sandbox,
        socket_path: None,
        pci_id: None,
    };
    let mut interfaces = vec![
        iface(&cfg.bridge, &bridge.mac, None),
        iface(&att.host_veth, &host.mac, None),
        iface(
            &att.ifname,
            &pod.mac,
            Some(netns.path.to_string_lossy().into_owned()),
        ),
    ];
    // As the bandwidth plugin reports it: after the pod's interface, so
    // the addresses' interface index (2) stays.
    if let Some(ifb) = ifb {
        interfaces.push(iface(&ifb.name, &ifb.mac, None));
    }
    let ips_out = ips
        .iter()
        .filter_map(|ip| {
            cfg.pool_of(*ip).map(|pool| IpConfig {
                interface: Some(2),
                address: pool.with_prefix(*ip),
                gateway: cfg.gateway.then_some(pool.gateway),
            })
        })
        .collect();
    let routes = if cfg.gateway {
        cfg.pools()
            .iter()
            .map(|pool| Route {
                dst: if pool.is_v6() {
                    "::/0".parse().unwrap_or_default()
                } else {
                    "0.0.0.0/0".parse().unwrap_or_default()
                },
                gw: Some(pool.gateway),
                mtu: None,
                advmss: None,
                priority: None,
                table: None,
                scope: None,
            })
            .collect()
    } else {
        Vec::new()
    };
    CNIResult {
        interfaces,
        ips: ips_out,
        routes,
        dns: cfg.dns.clone(),
    }
}

fn cmd_del(args: &Args) -> Result<(), BridgeError> {
    let att = Attachment::from_args(args)?;
    let cfg = &att.cfg;

    // nftables: rules of this attachment. Without nf_tables there are none.
    match firewall::teardown(cfg, &att.tag) {
        Ok(()) => {}
        Err(e) if cfg.wants_nft() => return Err(e),
        Err(e) => tracing::warn!(error = %e, "skipping nftables cleanup"),
    }

    // The host veth; deleting it deletes the pod end too, and the veth's
    // qdiscs and filter. The ifb device of egress shaping, whatever this
    // DEL's config says (DEL may come without runtimeConfig).
    let att = &att;
    link::with_rtnetlink(|h| async move {
        shaping::teardown(&h, &att.ifb, &att.tag).await?;
        if let Some(host) = link::get_link(&h, &att.host_veth).await? {
            if att.owns(&host) {
                link::delete_link(&h, host.index).await?;
            } else {
                tracing::warn!(link = %att.host_veth, "not deleting a link that is not ours");
            }
        }
        Ok(())
    })?;

    let store = IpamStore::lock(&cfg.network_dir(), cfg.lock_timeout)?;
    store.release(&att.owner)?;
    Ok(())
}

fn cmd_check(args: &Args) -> Result<(), BridgeError> {
    let att = Attachment::from_args(args)?;
    let netns = Netns::open(&netns_path(args)?)?;
    let cfg = &att.cfg;

    let ips = IpamStore::lock(&cfg.network_dir(), cfg.lock_timeout)?.lookup(&att.owner)?;
    for pool in cfg.pools() {
        if !ips.iter().any(|ip| pool.contains(*ip)) {
            return Err(BridgeError::Check(format!(
                "no address of {} is reserved for {}",
                pool.subnet, att.tag
            )));
        }
    }
    if let Some(prev) = &args.config().prev_result {
        for ipc in &prev.ips {
            if !ips.contains(&ipc.address.addr()) {
                return Err(BridgeError::Check(format!(
                    "prevResult address {} is not reserved for {}",
                    ipc.address, att.tag
                )));
            }
        }
    }

    let bridge_name = cfg.bridge.clone();
    let host_name = att.host_veth.clone();
    let tag = att.tag.clone();
    let ifb_name = att.ifb.clone();
    link::with_rtnetlink(|h| async move {
        let bridge = link::get_link(&h, &bridge_name)
            .await?
            .filter(|l| l.is("bridge") && l.up)
            .ok_or_else(|| {
                BridgeError::Check(format!("bridge {bridge_name} is missing or down"))
            })?;
        if cfg.gateway {
            let have = link::addresses(&h, bridge.index).await?;
            for pool in cfg.pools() {
                let gw = pool.with_prefix(pool.gateway);
                if !have.contains(&gw) {
                    return Err(BridgeError::Check(format!(
                        "bridge {bridge_name} lacks its gateway address {gw}"
                    )));
                }
            }
        }
        let host = link::get_link(&h, &host_name)
            .await?
            .ok_or_else(|| BridgeError::Check(format!("host veth {host_name} is missing")))?;
        if !host.is("veth") || host.alias.as_deref() != Some(tag.as_str()) {
            return Err(BridgeError::Check(format!(
                "link {host_name} is not the veth of {tag}"
            )));
        }
        if host.master != Some(bridge.index) || !host.up {
            return Err(BridgeError::Check(format!(
                "host veth {host_name} is not up on bridge {bridge_name}"
            )));
        }
        shaping::check(&h, &cfg.shaping, &host, &ifb_name, &tag).await
    })?;

    let ifname = att.ifname.clone();
    let want_addrs: Vec<IpNet> = ips
        .iter()
        .filter_map(|ip| cfg.pool_of(*ip).map(|p| p.with_prefix(*ip)))
        .collect();
    let want_gws: Vec<IpAddr> = if cfg.gateway {
        cfg.pools().iter().map(|p| p.gateway).collect()
    } else {
        Vec::new()
    };
    netns.run(move || {
        link::with_rtnetlink(|h| async move {
            let pod = link::get_link(&h, &ifname)
                .await?
                .ok_or_else(|| BridgeError::Check(format!("{ifname} is missing in the netns")))?;
            if !pod.is("veth") || !pod.up {
                return Err(BridgeError::Check(format!("{ifname} is not an up veth")));
            }
            let have = link::addresses(&h, pod.index).await?;
            for a in &want_addrs {
                if !have.contains(a) {
                    return Err(BridgeError::Check(format!("{ifname} lacks address {a}")));
                }
            }
            let gws = link::default_gateways(&h, pod.index).await?;
            for gw in &want_gws {
                if !gws.contains(gw) {
                    return Err(BridgeError::Check(format!(
                        "{ifname} has no default route via {gw}"
                    )));
                }
            }
            Ok(())
        })
    })?;

    if cfg.wants_nft() {
        firewall::check(cfg, &att.tag, &ips)?;
    }
    Ok(())
}

fn cmd_status(args: &Args) -> Result<(), BridgeError> {
    let cfg = BridgeConfig::from_netconf(args.config())?;
    let not_ready = |e: BridgeError| match e {
        BridgeError::Config(_) => e,
        other => BridgeError::NotReady(other.to_string()),
    };
    let dir = cfg.network_dir();
    ipam::probe_writable(&dir).map_err(not_ready)?;
    let store = IpamStore::lock(&dir, cfg.lock_timeout).map_err(not_ready)?;
    let reserved = store.reservations().map_err(not_ready)?;
    for pool in cfg.pools() {
        let used = reserved.keys().filter(|ip| pool.contains(**ip)).count() as u128;
        if used >= pool.capacity() {
            return Err(BridgeError::NotReady(format!(
                "no free address left in {}",
                pool.subnet
            )));
        }
    }
    drop(store);
    if cfg.ip_masq {
        firewall::probe(&cfg).map_err(not_ready)?;
    }
    Ok(())
}

fn cmd_gc(args: &Args) -> Result<(), BridgeError> {
    let conf = args.config();
    let cfg = BridgeConfig::from_netconf(conf)?;
    let valid: Vec<(String, String)> = conf
        .valid_attachments
        .iter()
        .flatten()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let store = IpamStore::lock(&cfg.network_dir(), cfg.lock_timeout)?;
    let released = store.retain(|o| {
        valid
            .iter()
            .any(|(c, i)| *c == o.container_id && *i == o.ifname)
    })?;
    drop(store);
    if !released.is_empty() {
        tracing::info!(count = released.len(), "GC released stale reservations");
    }
    let keep: HashSet<String> = valid
        .iter()
        .map(|(c, i)| cfg.attachment_tag(c, i))
        .collect();
    let prefix = config::attachment_tag_prefix(&cfg.network);
    let removed = link::with_rtnetlink(|h| {
        let (prefix, keep) = (&prefix, &keep);
        async move { shaping::gc(&h, prefix, keep).await }
    })?;
    if removed > 0 {
        tracing::info!(count = removed, "GC deleted stale ifb devices");
    }
    match firewall::gc(&cfg, &keep) {
        Ok(()) => Ok(()),
        Err(e) if cfg.wants_nft() => Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "skipping nftables GC");
            Ok(())
        }
    }
}
