//! Links, addresses and routes over rtnetlink, the pod's network namespace
//! and the few sysctls the plugin sets.

use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use nix::sched::{CloneFlags, setns};
use nix::sys::statfs::{NSFS_MAGIC, fstatfs};
use rscni_types::ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder,
};

use super::error::BridgeError;

const ENODEV: i32 = 19;
const EEXIST: i32 = 17;
const ENOENT: i32 = 2;

/// What the plugin needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: String,
    pub kind: Option<String>,
    pub alias: Option<String>,
    pub master: Option<u32>,
    pub up: bool,
    pub mtu: Option<u32>,
}

impl Link {
    pub(super) fn from_message(msg: &LinkMessage) -> Self {
        let mut link = Self {
            index: msg.header.index,
            name: String::new(),
            mac: String::new(),
            kind: None,
            alias: None,
            master: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            mtu: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name.clone_from(n),
                LinkAttribute::Address(a) => link.mac = format_mac(a),
                LinkAttribute::IfAlias(a) => link.alias = Some(a.clone()),
                LinkAttribute::Controller(m) if *m != 0 => link.master = Some(*m),
                LinkAttribute::Mtu(m) => link.mtu = Some(*m),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let NlLinkInfo::Kind(kind) = info {
                            link.kind = Some(kind.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }

    /// Whether the link's kind is `kind` (e.g. `veth`, `bridge`).
    pub fn is(&self, kind: &str) -> bool {
        self.kind.as_deref() == Some(kind)
    }
}

/// `aa:bb:cc:dd:ee:ff`
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The pod interface's MAC: `0a:58` + the IPv4 address (the kubenet
/// convention), else + the low 32 bits of the IPv6 address; deterministic per
/// address, so neighbour caches stay right when an address is reused.
pub fn pod_mac(ips: &[IpAddr]) -> [u8; 6] {
    let tail = ips
        .iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| ips.first())
        .map_or([0, 0, 0, 1], |ip| match ip {
            IpAddr::V4(a) => a.octets(),
            IpAddr::V6(a) => {
                let o = a.octets();
                [o[12], o[13], o[14], o[15]]
            }
        });
    [0x0a, 0x58, tail[0], tail[1], tail[2], tail[3]]
}

/// The bridge's MAC: locally administered, derived from its name, so it
/// never changes as ports come and go.
pub fn bridge_mac(name: &str) -> [u8; 6] {
    let h = super::config::fnv1a(&["bridge-mac", name]).to_be_bytes();
    [0x02, h[0], h[1], h[2], h[3], h[4]]
}

fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => Some(-msg.raw_code()),
        _ => None,
    }
}

/// Runs a future to completion on a fresh single-threaded runtime with an
/// rtnetlink connection bound to the calling thread's network namespace.
pub fn with_rtnetlink<T, F, Fut>(f: F) -> Result<T, BridgeError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, BridgeError>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BridgeError::io("starting the netlink runtime", e))?;
    rt.block_on(async move {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| BridgeError::netlink("opening an rtnetlink socket", e))?;
        let task = tokio::spawn(conn);
        let out = f(handle).await;
        task.abort();
        out
    })
}

/// An open network namespace (a bind-mounted nsfs path).
#[derive(Debug)]
pub struct Netns {
    pub path: PathBuf,
    file: File,
}

impl Netns {
    /// Opens the namespace at `path`.
    pub fn open(path: &Path) -> Result<Self, BridgeError> {
        let file = File::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                BridgeError::NetnsMissing {
                    path: path.to_path_buf(),
                    source: e,
                }
            } else {
                BridgeError::io(format!("opening netns {}", path.display()), e)
            }
        })?;
        let fs = fstatfs(&file)
            .map_err(|e| BridgeError::io(format!("statfs {}", path.display()), e.into()))?;
        if fs.filesystem_type() != NSFS_MAGIC {
            return Err(BridgeError::Env(format!(
                "CNI_NETNS {} is not a namespace (nsfs) file",
                path.display()
            )));
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The raw fd, for `IFLA_NET_NS_FD`.
    pub fn raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// Runs `f` on a dedicated thread that has entered the namespace (setns
    /// changes only the calling thread, and that thread ends with `f`).
    pub fn run<T, F>(&self, f: F) -> Result<T, BridgeError>
    where
        T: Send,
        F: FnOnce() -> Result<T, BridgeError> + Send,
    {
        let fd = self.file.as_fd();
        let path = &self.path;
        std::thread::scope(|s| {
            s.spawn(move || {
                setns(fd, CloneFlags::CLONE_NEWNET).map_err(|e| {
                    BridgeError::Env(format!(
                        "CNI_NETNS {} is not a network namespace: {e}",
                        path.display()
                    ))
                })?;
                f()
            })
            .join()
            .unwrap_or_else(|_| {
                Err(BridgeError::Netlink {
                    what: "netns worker".into(),
                    message: "panicked".into(),
                })
            })
        })
    }
}

/// Sets a sysctl under /proc/sys (of the calling thread's network namespace
/// for net.*) unless it already has the value. `parts` are path components,
/// so interface names containing dots (`eth0.100`) stay whole.
pub fn sysctl(parts: &[&str], value: &str) -> Result<(), BridgeError> {
    let mut path = PathBuf::from("/proc/sys");
    path.extend(parts);
    match std::fs::read_to_string(&path) {
        Ok(cur) if cur.trim() == value => Ok(()),
        _ => std::fs::write(&path, value)
            .map_err(|e| BridgeError::io(format!("setting sysctl {}={value}", parts.join(".")), e)),
    }
}

/// The link called `name`, if any.
pub async fn get_link(h: &Handle, name: &str) -> Result<Option<Link>, BridgeError> {
    let mut stream = h.link().get().match_name(name.to_string()).execute();
    match stream.try_next().await {
        Ok(Some(msg)) => Ok(Some(Link::from_message(&msg))),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
        Err(e) => Err(BridgeError::netlink(format!("looking up link {name}"), e)),
    }
}

/// The link with `index`, if any.
pub async fn get_link_by_index(h: &Handle, index: u32) -> Result<Option<Link>, BridgeError> {
    let mut stream = h.link().get().match_index(index).execute();
    match stream.try_next().await {
        Ok(Some(msg)) => Ok(Some(Link::from_message(&msg))),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
        Err(e) => Err(BridgeError::netlink(format!("looking up link #{index}"), e)),
    }
}

/// The bridge, created (up, fixed MAC, MTU) if missing. A link of that name
/// that is not a bridge is an error: it is not ours.
pub async fn ensure_bridge(h: &Handle, name: &str, mtu: u32) -> Result<Link, BridgeError> {
    let link = match get_link(h, name).await? {
        Some(link) => link,
        None => {
            let msg = LinkBridge::new(name)
                .mtu(mtu)
                .address(bridge_mac(name).to_vec())
                .up()
                .build();
            match h.link().add(msg).execute().await {
                Ok(()) => {}
                // Another ADD created it first.
                Err(e) if errno(&e) == Some(EEXIST) => {}
                Err(e) => return Err(BridgeError::netlink(format!("creating bridge {name}"), e)),
            }
            get_link(h, name).await?.ok_or_else(|| {
                BridgeError::netlink(format!("creating bridge {name}"), "vanished after creation")
            })?
        }
    };
    if !link.is("bridge") {
        return Err(BridgeError::Conflict(format!(
            "link {name} exists and is not a bridge (kind {})",
            link.kind.as_deref().unwrap_or("unknown")
        )));
    }
    if !link.up {
        set_up(h, link.index).await?;
    }
    Ok(link)
}

/// Brings a link up.
pub async fn set_up(h: &Handle, index: u32) -> Result<(), BridgeError> {
    h.link()
        .change(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| BridgeError::netlink(format!("bringing link #{index} up"), e))
}

/// The addresses on a link, with their prefix lengths.
pub async fn addresses(h: &Handle, index: u32) -> Result<Vec<IpNet>, BridgeError> {
    let mut out = Vec::new();
    let mut stream = h.address().get().set_link_index_filter(index).execute();
    loop {
        match stream.try_next().await {
            Ok(Some(msg)) => {
                if msg.header.index != index {
                    continue;
                }
                let ip = msg.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let ip = ip.or_else(|| {
                    msg.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                });
                if let Some(net) = ip.and_then(|ip| IpNet::new(ip, msg.header.prefix_len).ok()) {
                    out.push(net);
                }
            }
            Ok(None) => return Ok(out),
            Err(e) => {
                return Err(BridgeError::netlink(
                    format!("listing addresses of #{index}"),
                    e,
                ));
            }
        }
    }
}

/// Adds `addr` to the link unless it is there. IPv6 addresses skip DAD: IPAM
/// guarantees uniqueness, and DAD would hold the address back ~2s.
pub async fn ensure_address(h: &Handle, index: u32, addr: IpNet) -> Result<(), BridgeError> {
    if addresses(h, index).await?.contains(&addr) {
        return Ok(());
    }
    let mut req = h.address().add(index, addr.addr(), addr.prefix_len());
    if addr.addr().is_ipv6() {
        let msg = req.message_mut();
        msg.header.flags |= AddressHeaderFlags::Nodad;
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    match req.execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
        Err(e) => Err(BridgeError::netlink(
            format!("adding address {addr} to link #{index}"),
            e,
        )),
    }
}

/// Creates the veth pair: `host` on the host, enslaved to the bridge and up;
/// its peer created directly in the pod's namespace as `ifname` (so the name
/// never clashes with a host link), with the MTU and MAC given.
pub async fn create_veth(
    h: &Handle,
    host: &str,
    ifname: &str,
    netns: &Netns,
    bridge_index: u32,
    mtu: u32,
    mac: [u8; 6],
) -> Result<(), BridgeError> {
    let peer = LinkUnspec::new_with_name(ifname)
        .setns_by_fd(netns.raw_fd())
        .mtu(mtu)
        .address(mac.to_vec())
        .build();
    let msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
        .name(host)
        .mtu(mtu)
        .controller(bridge_index)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .up()
        .build();
    match h.link().add(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(EEXIST) => Err(BridgeError::Conflict(format!(
            "cannot create veth {host}/{ifname}: {ifname} already exists in {} (or {host} on the host)",
            netns.path.display()
        ))),
        Err(e) => Err(BridgeError::netlink(
            format!("creating veth {host}/{ifname}"),
            e,
        )),
    }
}

/// Tags the host end (alias = the attachment tag, how DEL recognises it as
/// ours) and sets hairpin mode on its bridge port.
pub async fn finish_host_veth(
    h: &Handle,
    index: u32,
    tag: &str,
    hairpin: bool,
) -> Result<(), BridgeError> {
    let msg = LinkBridgePort::new(index)
        .hairpin(hairpin)
        .alias(tag)
        .up()
        .build();
    h.link()
        .change(msg)
        .execute()
        .await
        .map_err(|e| BridgeError::netlink(format!("configuring bridge port #{index}"), e))
}

/// Deletes a link; a link already gone is fine.
pub async fn delete_link(h: &Handle, index: u32) -> Result<(), BridgeError> {
    match h.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if matches!(errno(&e), Some(ENODEV | ENOENT)) => Ok(()),
        Err(e) => Err(BridgeError::netlink(format!("deleting link #{index}"), e)),
    }
}

/// The gateways of the default routes through a link.
pub async fn default_gateways(h: &Handle, index: u32) -> Result<Vec<IpAddr>, BridgeError> {
    let mut out = Vec::new();
    for query in [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ] {
        let mut stream = h.route().get(query).execute();
        loop {
            match stream.try_next().await {
                Ok(Some(route)) => {
                    if let Some(gw) = default_gateway_of(&route, index) {
                        out.push(gw);
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(BridgeError::netlink("listing routes", e)),
            }
        }
    }
    Ok(out)
}

fn default_gateway_of(route: &RouteMessage, index: u32) -> Option<IpAddr> {
    if route.header.destination_prefix_length != 0 {
        return None;
    }
    let oif = route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    });
    if oif != Some(index) {
        return None;
    }
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(IpAddr::V4(*g)),
        RouteAttribute::Gateway(RouteAddress::Inet6(g)) => Some(IpAddr::V6(*g)),
        _ => None,
    })
}

/// Adds a default route via `gw` through the link unless it exists.
pub async fn ensure_default_route(h: &Handle, index: u32, gw: IpAddr) -> Result<(), BridgeError> {
    if default_gateways(h, index).await?.contains(&gw) {
        return Ok(());
    }
    let msg = match gw {
        IpAddr::V4(g) => RouteMessageBuilder::<Ipv4Addr>::new()
            .output_interface(index)
            .gateway(g)
            .build(),
        IpAddr::V6(g) => RouteMessageBuilder::<Ipv6Addr>::new()
            .output_interface(index)
            .gateway(g)
            .build(),
    };
    match h.route().add(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
        Err(e) => Err(BridgeError::netlink(
            format!("adding default route via {gw}"),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        let ips: Vec<IpAddr> = vec![
            "fd00::1:2".parse().expect("ip"),
            "10.89.0.5".parse().expect("ip"),
        ];
        assert_eq!(format_mac(&pod_mac(&ips)), "0a:58:0a:59:00:05");
        let v6only: Vec<IpAddr> = vec!["fd00::a:b0c:d0e".parse().expect("ip")];
        assert_eq!(format_mac(&pod_mac(&v6only)), "0a:58:0b:0c:0d:0e");
        let m = bridge_mac("berth0");
        assert_eq!(m[0], 0x02);
        assert_eq!(m, bridge_mac("berth0"));
    }
}
