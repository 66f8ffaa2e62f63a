//! The plugin's network configuration: parsed from the CNI `NetConf`, validated,
//! with every derived value (pools, gateways, names) computed once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use rscni_types::ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rscni_types::types::{Dns, NetConf, PortMapping, Protocol};
use serde::Deserialize;
use serde_json::Value;

use super::bandwidth::{self, Shaping};
use super::error::BridgeError;

/// Default bridge name.
pub const DEFAULT_BRIDGE: &str = "berth0";
/// Default IPAM data directory (one subdirectory per network).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/berth/cni/networks";
/// Default nftables table (family `inet`).
pub const DEFAULT_NFT_TABLE: &str = "berth-bridge";
/// Default MTU of the bridge and both veth ends.
pub const DEFAULT_MTU: u32 = 1500;
/// Default time to wait for the network's IPAM lock.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// The plugin-specific keys of the configuration, as written in JSON.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    bridge: Option<String>,
    #[serde(default)]
    subnets: Vec<String>,
    gateway: Option<bool>,
    #[serde(alias = "hairpinMode")]
    hairpin: Option<bool>,
    mtu: Option<u32>,
    data_dir: Option<PathBuf>,
    nft_table: Option<String>,
    lock_timeout_ms: Option<u64>,
}

/// One address family's pool: the subnet, its gateway and the range handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    /// The subnet, truncated to its network address.
    pub subnet: IpNet,
    /// The first host address; the bridge's address when `gateway` is on, and
    /// never handed out either way.
    pub gateway: IpAddr,
    /// First address handed out (gateway + 1).
    pub first: u128,
    /// Last address handed out (for IPv4 the one below broadcast; for IPv6 the
    /// one below the all-ones address).
    pub last: u128,
}

impl Pool {
    /// Builds the pool of a subnet; refuses subnets too small to hold the
    /// gateway and at least one pod.
    pub fn new(subnet: IpNet) -> Result<Self, BridgeError> {
        let subnet = subnet.trunc();
        let bits = match subnet {
            IpNet::V4(_) => 32,
            IpNet::V6(_) => 128,
        };
        let host_bits = bits - u32::from(subnet.prefix_len());
        if host_bits < 2 {
            return Err(BridgeError::Config(format!(
                "subnet {subnet} is too small: it must hold a gateway and at least one pod"
            )));
        }
        let network = ip_to_u128(subnet.network());
        let size = if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let all_ones = network + size;
        let pool = Self {
            subnet,
            gateway: u128_to_ip(network + 1, subnet.network().is_ipv6()),
            first: network + 2,
            last: all_ones - 1,
        };
        if pool.first > pool.last {
            return Err(BridgeError::Config(format!(
                "subnet {subnet} is too small: it must hold a gateway and at least one pod"
            )));
        }
        Ok(pool)
    }

    /// Whether this is the IPv6 pool.
    pub fn is_v6(&self) -> bool {
        matches!(self.subnet, IpNet::V6(_))
    }

    /// Whether `ip` may be handed out from this pool.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.is_v6() && (self.first..=self.last).contains(&ip_to_u128(ip))
    }

    /// The number of addresses the pool can hand out (saturating).
    pub fn capacity(&self) -> u128 {
        (self.last - self.first).saturating_add(1)
    }

    /// `ip` with this pool's prefix length, as it is configured on an interface.
    pub fn with_prefix(&self, ip: IpAddr) -> IpNet {
        // The prefix length comes from a valid subnet of the same family.
        match (ip, self.subnet) {
            (IpAddr::V4(a), IpNet::V4(n)) => {
                IpNet::V4(Ipv4Net::new(a, n.prefix_len()).unwrap_or(n))
            }
            (IpAddr::V6(a), IpNet::V6(n)) => {
                IpNet::V6(Ipv6Net::new(a, n.prefix_len()).unwrap_or(n))
            }
            _ => self.subnet,
        }
    }
}

/// The address as an integer (IPv4 addresses in the low 32 bits).
pub fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The inverse of [`ip_to_u128`].
pub fn u128_to_ip(value: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(value))
    } else {
        // Only called with values derived from IPv4 addresses.
        IpAddr::V4(Ipv4Addr::from(u32::try_from(value).unwrap_or(u32::MAX)))
    }
}

/// Transport protocol of a port mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Sctp => 132,
        }
    }

    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

/// One host port mapping from the `portMappings` capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMap {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Proto,
    /// Only traffic to this host address is mapped; `None` maps every local
    /// address of the host (including loopback, for IPv4).
    pub host_ip: Option<IpAddr>,
}

impl PortMap {
    fn from_cni(pm: &PortMapping) -> Result<Self, BridgeError> {
        let port = |value: u32, what: &str| {
            u16::try_from(value)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    BridgeError::Config(format!(
                        "portMappings: {what} {value} is not a port number (1-65535)"
                    ))
                })
        };
        let protocol = match pm.protocol {
            None | Some(Protocol::Tcp) => Proto::Tcp,
            Some(Protocol::Udp) => Proto::Udp,
            Some(Protocol::Sctp) => Proto::Sctp,
        };
        let host_ip = match pm.custom.get("hostIP") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => {
                let ip: IpAddr = s.parse().map_err(|_| {
                    BridgeError::Config(format!("portMappings: hostIP {s:?} is not an IP address"))
                })?;
                (!ip.is_unspecified()).then_some(ip)
            }
            Some(other) => {
                return Err(BridgeError::Config(format!(
                    "portMappings: hostIP must be a string, not {other}"
                )));
            }
        };
        Ok(Self {
            host_port: port(pm.host_port, "hostPort")?,
            container_port: port(pm.container_port, "containerPort")?,
            protocol,
            host_ip,
        })
    }
}

/// `runtimeConfig.ipRanges` (capability `ipRanges`): a list of range
/// sets, each a list of ranges, as host-local reads it. berth-bridge takes
/// one subnet per set (the node's pod CIDRs, one per address family);
/// range bounds and gateways are not supported and are refused rather
/// than ignored.
fn ip_ranges(rc: &rscni_types::types::RuntimeConf) -> Result<Vec<String>, BridgeError> {
    let bad = |m: String| BridgeError::Config(format!("runtimeConfig.ipRanges: {m}"));
    let Some(v) = rc.custom.get("ipRanges") else {
        return Ok(Vec::new());
    };
    let sets = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(sets) => sets,
        other => return Err(bad(format!("must be a list of range sets, not {other}"))),
    };
    let mut out = Vec::new();
    for set in sets {
        let ranges = set
            .as_array()
            .ok_or_else(|| bad(format!("a range set must be a list, not {set}")))?;
        let [range] = ranges.as_slice() else {
            return Err(bad(format!(
                "one range per set is supported, got {}",
                ranges.len()
            )));
        };
        let obj = range
            .as_object()
            .ok_or_else(|| bad(format!("a range must be an object, not {range}")))?;
        if let Some(k) = obj.keys().find(|k| *k != "subnet") {
            return Err(bad(format!("{k:?} is not supported (only subnet)")));
        }
        let subnet = obj
            .get("subnet")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a range needs a subnet string".into()))?;
        out.push(subnet.to_owned());
    }
    Ok(out)
}

/// The validated configuration of one invocation.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// The network name (`name`).
    pub network: String,
    /// The bridge's name.
    pub bridge: String,
    /// The IPv4 pool, if an IPv4 subnet is configured.
    pub v4: Option<Pool>,
    /// The IPv6 pool, if an IPv6 subnet is configured.
    pub v6: Option<Pool>,
    /// Put the gateway addresses on the bridge and default routes in the pod.
    pub gateway: bool,
    /// Masquerade pod traffic leaving the subnet.
    pub ip_masq: bool,
    /// Hairpin mode on the bridge ports.
    pub hairpin: bool,
    /// MTU of the bridge and the veth pair.
    pub mtu: u32,
    /// IPAM state root; the network's state lives in `data_dir/<network>`.
    pub data_dir: PathBuf,
    /// The nftables table (family `inet`) rules go in.
    pub nft_table: String,
    /// How long to wait for the network's IPAM lock.
    pub lock_timeout: Duration,
    /// DNS settings passed through to the result.
    pub dns: Option<Dns>,
    /// Host port mappings of this invocation (`runtimeConfig.portMappings`).
    pub port_mappings: Vec<PortMap>,
    /// Traffic shaping of this invocation (`runtimeConfig.bandwidth`).
    pub shaping: Shaping,
}

impl BridgeConfig {
    /// Parses and validates the plugin configuration.
    pub fn from_netconf(conf: &NetConf) -> Result<Self, BridgeError> {
        let raw: RawConf =
            serde_json::from_value(Value::Object(conf.custom.clone().into_iter().collect()))
                .map_err(|e| BridgeError::Config(format!("invalid berth-bridge config: {e}")))?;

        let bridge = raw.bridge.unwrap_or_else(|| DEFAULT_BRIDGE.to_string());
        validate_ifname(&bridge).map_err(|e| BridgeError::Config(format!("bridge: {e}")))?;

        // The runtime's ranges (the node's pod CIDRs) replace the
        // configured subnets for this invocation.
        let ranges = conf
            .runtime_config
            .as_ref()
            .map(ip_ranges)
            .transpose()?
            .filter(|r| !r.is_empty());
        let (subnets, key) = match &ranges {
            Some(r) => (r, "runtimeConfig.ipRanges"),
            None => (&raw.subnets, "subnets"),
        };
        if subnets.is_empty() {
            return Err(BridgeError::Config(
                "subnets: at least one subnet (one IPv4 and/or one IPv6 CIDR) is required".into(),
            ));
        }
        let (mut v4, mut v6) = (None, None);
        for s in subnets {
            let net: IpNet = s
                .parse()
                .map_err(|_| BridgeError::Config(format!("{key}: {s:?} is not a CIDR")))?;
            let pool = Pool::new(net)?;
            let slot = if pool.is_v6() { &mut v6 } else { &mut v4 };
            if slot.is_some() {
                return Err(BridgeError::Config(format!(
                    "{key}: at most one IPv4 and one IPv6 subnet (got a second: {s})"
                )));
            }
            *slot = Some(pool);
        }

        let mtu = raw.mtu.unwrap_or(DEFAULT_MTU);
        if !(68..=65535).contains(&mtu) {
            return Err(BridgeError::Config(format!(
                "mtu {mtu} is out of range (68-65535)"
            )));
        }
        let data_dir = raw
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if !data_dir.is_absolute() {
            return Err(BridgeError::Config(format!(
                "dataDir {} must be an absolute path",
                data_dir.display()
            )));
        }
        let nft_table = raw
            .nft_table
            .unwrap_or_else(|| DEFAULT_NFT_TABLE.to_string());
        if nft_table.is_empty()
            || nft_table.len() > 64
            || !nft_table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        {
            return Err(BridgeError::Config(format!(
                "nftTable {nft_table:?} must be 1-64 characters of [A-Za-z0-9_-]"
            )));
        }

        let port_mappings = conf
            .runtime_config
            .as_ref()
            .map(|rc| rc.port_mappings.iter().map(PortMap::from_cni).collect())
            .transpose()?
            .unwrap_or_default();

        let shaping = conf
            .runtime_config
            .as_ref()
            .and_then(|rc| rc.custom.get("bandwidth"))
            .map(|bw| bandwidth::parse(bw, mtu))
            .transpose()?
            .unwrap_or_default();

        Ok(Self {
            network: conf.name.clone(),
            bridge,
            v4,
            v6,
            gateway: raw.gateway.unwrap_or(true),
            ip_masq: conf.ip_masq.unwrap_or(false),
            hairpin: raw.hairpin.unwrap_or(true),
            mtu,
            data_dir,
            nft_table,
            lock_timeout: raw
                .lock_timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(DEFAULT_LOCK_TIMEOUT),
            dns: conf.dns.clone(),
            port_mappings,
            shaping,
        })
    }

    /// The configured pools, IPv4 first.
    pub fn pools(&self) -> Vec<Pool> {
        self.v4.into_iter().chain(self.v6).collect()
    }

    /// The pool an address belongs to.
    pub fn pool_of(&self, ip: IpAddr) -> Option<Pool> {
        self.pools().into_iter().find(|p| p.contains(ip))
    }

    /// The network's IPAM directory.
    pub fn network_dir(&self) -> PathBuf {
        self.data_dir.join(&self.network)
    }

    /// Whether any nftables rule is needed for this invocation's network.
    pub fn wants_nft(&self) -> bool {
        self.ip_masq || !self.port_mappings.is_empty()
    }

    /// The tag (nftables comment, link alias) naming one attachment.
    pub fn attachment_tag(&self, container_id: &str, ifname: &str) -> String {
        attachment_tag(&self.network, container_id, ifname)
    }
}

/// Checks a Linux interface name.
pub fn validate_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!("interface name {name:?} must be 1-15 bytes"));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!("interface name {name:?} is not valid"));
    }
    Ok(())
}

/// 64-bit FNV-1a: stable across builds and Rust versions (names derived from
/// it must be the same for the DEL of a newer binary).
pub fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            // A separator byte no UTF-8 string contains.
            h ^= 0xff;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for b in part.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The host end of an attachment's veth pair: `berth` + 10 hex digits of a
/// hash of network, container ID and interface name (15 bytes), so DEL finds
/// it without state even when the netns is gone.
pub fn host_veth_name(network: &str, container_id: &str, ifname: &str) -> String {
    format!(
        "berth{:010x}",
        fnv1a(&[network, container_id, ifname]) & 0xff_ffff_ffff
    )
}

/// The ifb device that shapes an attachment's egress: `bwp` (as the
/// reference bandwidth plugin names them) + 12 hex digits of a hash of
/// network, container ID and interface name (15 bytes).
pub fn ifb_name(network: &str, container_id: &str, ifname: &str) -> String {
    format!(
        "bwp{:012x}",
        fnv1a(&["bwp", network, container_id, ifname]) & 0xffff_ffff_ffff
    )
}

/// The network part of tags: the name, or a hash when the name is long.
pub fn network_tag(network: &str) -> String {
    if network.len() <= 40 {
        network.to_string()
    } else {
        format!("#{:016x}", fnv1a(&[network]))
    }
}

/// The tag of an attachment: `berth:<network>:<container id>/<ifname>`, at
/// most 127 bytes (nft's comment limit); longer IDs are hashed.
pub fn attachment_tag(network: &str, container_id: &str, ifname: &str) -> String {
    let tag = format!("berth:{}:{container_id}/{ifname}", network_tag(network));
    if tag.len() <= 127 {
        tag
    } else {
        format!(
            "berth:{}:#{:016x}",
            network_tag(network),
            fnv1a(&[container_id, ifname])
        )
    }
}

/// The prefix of every attachment tag of a network.
pub fn attachment_tag_prefix(network: &str) -> String {
    format!("berth:{}:", network_tag(network))
}

/// The prefix of a network's own (not per-attachment) rule tags.
pub fn network_rule_prefix(network: &str) -> String {
    format!("berth:{} ", network_tag(network))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_ranges_replace_the_subnets() {
        let c = BridgeConfig::from_netconf(&netconf(
            r#"{"cniVersion":"1.1.0","name":"n","type":"berth-bridge","subnets":["10.89.0.0/16"],
               "runtimeConfig":{"ipRanges":[[{"subnet":"10.244.3.0/24"}],[{"subnet":"fd00:3::/64"}]]}}"#,
        ))
        .unwrap();
        assert_eq!(c.v4.unwrap().subnet.to_string(), "10.244.3.0/24");
        assert_eq!(c.v6.unwrap().subnet.to_string(), "fd00:3::/64");
        for (ranges, want) in [
            (
                r#"[[{"subnet":"10.1.0.0/24","rangeStart":"10.1.0.5"}]]"#,
                "rangeStart",
            ),
            (
                r#"[[{"subnet":"10.1.0.0/24"},{"subnet":"10.2.0.0/24"}]]"#,
                "one range per set",
            ),
            (r#"[[{"subnet":"nope"}]]"#, "is not a CIDR"),
            (
                r#"[[{"subnet":"10.1.0.0/24"}],[{"subnet":"10.2.0.0/24"}]]"#,
                "at most one IPv4",
            ),
            (r#"{"subnet":"10.1.0.0/24"}"#, "list of range sets"),
        ] {
            let e = BridgeConfig::from_netconf(&netconf(&format!(
                r#"{{"cniVersion":"1.1.0","name":"n","type":"berth-bridge","subnets":["10.89.0.0/16"],"runtimeConfig":{{"ipRanges":{ranges}}}}}"#
            )))
            .unwrap_err()
            .to_string();
            assert!(e.contains(want), "{ranges}: {e}");
            assert!(e.contains("ipRanges"), "{e}");
        }
        // Empty: the configured subnets.
        let c = BridgeConfig::from_netconf(&netconf(
            r#"{"cniVersion":"1.1.0","name":"n","type":"berth-bridge","subnets":["10.89.0.0/16"],"runtimeConfig":{"ipRanges":[]}}"#,
        ))
        .unwrap();
        assert_eq!(c.v4.unwrap().subnet.to_string(), "10.89.0.0/16");
    }

    fn netconf(json: &str) -> NetConf {
        serde_json::from_str(json).expect("test config parses")
    }

    #[test]
    fn full_config() {
        let c = BridgeConfig::from_netconf(&netconf(
            r#"{"cniVersion":"1.1.0","name":"berth","type":"berth-bridge","bridge":"br9",
                "subnets":["10.89.0.0/16","fd00:89::/64"],"gateway":true,"ipMasq":true,
                "hairpinMode":false,"mtu":1400,"dataDir":"/tmp/x","nftTable":"t1",
                "lockTimeoutMs":250,"dns":{"nameservers":["10.89.0.1"]},
                "runtimeConfig":{"portMappings":[
                    {"hostPort":8080,"containerPort":80,"protocol":"tcp"},
                    {"hostPort":53,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"},
                    {"hostPort":9,"containerPort":9,"hostIP":"0.0.0.0"}],
                    "bandwidth":{"ingressRate":1000000,"ingressBurst":4294967295}}}"#,
        ))
        .expect("valid");
        assert_eq!(c.bridge, "br9");
        let v4 = c.v4.expect("v4");
        assert_eq!(v4.gateway.to_string(), "10.89.0.1");
        assert_eq!(u128_to_ip(v4.first, false).to_string(), "10.89.0.2");
        assert_eq!(u128_to_ip(v4.last, false).to_string(), "10.89.255.254");
        let v6 = c.v6.expect("v6");
        assert_eq!(v6.gateway.to_string(), "fd00:89::1");
        assert_eq!(
            u128_to_ip(v6.last, true).to_string(),
            "fd00:89::ffff:ffff:ffff:fffe"
        );
        assert!(c.ip_masq && c.gateway && !c.hairpin);
        assert_eq!(c.mtu, 1400);
        assert_eq!(c.lock_timeout, Duration::from_millis(250));
        assert_eq!(c.port_mappings.len(), 3);
        assert_eq!(c.port_mappings[1].protocol, Proto::Udp);
        assert_eq!(
            c.port_mappings[1].host_ip,
            Some("127.0.0.1".parse().expect("ip"))
        );
        assert_eq!(c.port_mappings[2].host_ip, None);
        assert_eq!(c.network_dir(), PathBuf::from("/tmp/x/berth"));
        assert_eq!(
            c.shaping.ingress.map(|l| (l.rate, l.burst)),
            Some((1_000_000, 4_294_967_295))
        );
        assert!(c.shaping.egress.is_none());
    }

    #[test]
    fn defaults() {
        let c = BridgeConfig::from_netconf(&netconf(
            r#"{"cniVersion":"1.0.0","name":"n","type":"berth-bridge","subnets":["10.1.2.3/24"]}"#,
        ))
        .expect("valid");
        assert_eq!(c.bridge, DEFAULT_BRIDGE);
        assert_eq!(c.v4.expect("v4").subnet.to_string(), "10.1.2.0/24");
        assert!(c.v6.is_none());
        assert!(c.gateway && c.hairpin && !c.ip_masq);
        assert_eq!(c.mtu, DEFAULT_MTU);
        assert_eq!(c.nft_table, DEFAULT_NFT_TABLE);
        assert!(!c.wants_nft());
    }

    #[test]
    fn rejects_bad_configs() {
        for (json, needle) in [
            (r#""subnets":[]"#, "at least one subnet"),
            (r#""subnets":["nope"]"#, "not a CIDR"),
            (
                r#""subnets":["10.0.0.0/8","10.1.0.0/16"]"#,
                "at most one IPv4",
            ),
            (r#""subnets":["10.0.0.0/31"]"#, "too small"),
            (
                r#""subnets":["10.0.0.0/8"],"bridge":"waytoolongbridgename""#,
                "1-15",
            ),
            (r#""subnets":["10.0.0.0/8"],"mtu":10"#, "mtu"),
            (r#""subnets":["10.0.0.0/8"],"dataDir":"rel""#, "absolute"),
            (r#""subnets":["10.0.0.0/8"],"nftTable":"a b""#, "nftTable"),
            (r#""subnets":"10.0.0.0/8""#, "invalid berth-bridge config"),
            (
                r#""subnets":["10.0.0.0/8"],"runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":80}]}"#,
                "hostPort 0",
            ),
            (
                r#""subnets":["10.0.0.0/8"],"runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":70000}]}"#,
                "containerPort 70000",
            ),
            (
                r#""subnets":["10.0.0.0/8"],"runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"hostIP":"x"}]}"#,
                "hostIP",
            ),
            (
                r#""subnets":["10.0.0.0/8"],"runtimeConfig":{"bandwidth":{"egressRate":-1,"egressBurst":100000}}"#,
                "runtimeConfig.bandwidth",
            ),
            (
                r#""subnets":["10.0.0.0/8"],"mtu":9000,"runtimeConfig":{"bandwidth":{"egressRate":1000000,"egressBurst":20000}}"#,
                "MTU 9000",
            ),
        ] {
            let conf = netconf(&format!(
                r#"{{"cniVersion":"1.0.0","name":"n","type":"berth-bridge",{json}}}"#
            ));
            let err = BridgeConfig::from_netconf(&conf).expect_err(json);
            assert!(matches!(err, BridgeError::Config(_)), "{json}: {err:?}");
            assert!(err.to_string().contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn pool_bounds() {
        let p = Pool::new("10.0.0.0/30".parse().expect("net")).expect("pool");
        assert_eq!(p.capacity(), 1);
        assert!(p.contains("10.0.0.2".parse().expect("ip")));
        assert!(!p.contains("10.0.0.1".parse().expect("ip")));
        assert!(!p.contains("10.0.0.3".parse().expect("ip")));
        assert!(!p.contains("fd00::2".parse().expect("ip")));
        let p6 = Pool::new("fd00::/126".parse().expect("net")).expect("pool");
        assert_eq!(p6.capacity(), 1);
        let big = Pool::new("::/0".parse().expect("net")).expect("pool");
        assert_eq!(big.last, u128::MAX - 1);
        assert_eq!(
            p.with_prefix("10.0.0.2".parse().expect("ip")).to_string(),
            "10.0.0.2/30"
        );
    }

    #[test]
    fn shipped_default_conflist_is_valid() {
        let text = include_str!("../../../deploy/cni/10-berth.conflist");
        let list: rscni_types::types::NetConfList = serde_json::from_str(text).expect("conflist");
        assert_eq!(list.name, "berth");
        assert_eq!(list.plugins.len(), 1);
        let mut plugin = list.plugins[0].clone();
        assert_eq!(plugin.r#type, "berth-bridge");
        // As libcni hands it to the plugin.
        plugin.name.clone_from(&list.name);
        plugin.cni_version.clone_from(&list.cni_version);
        let c = BridgeConfig::from_netconf(&plugin).expect("valid");
        assert_eq!(c.bridge, DEFAULT_BRIDGE);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.nft_table, DEFAULT_NFT_TABLE);
        assert_eq!(c.v4.expect("v4").subnet.to_string(), "10.89.0.0/16");
        assert!(c.ip_masq && c.gateway && c.hairpin);
        let caps = plugin.capabilities.unwrap_or_default();
        for cap in ["portMappings", "ipRanges", "bandwidth"] {
            assert_eq!(caps.get(cap).copied(), Some(true), "{cap}");
        }
    }

    #[test]
    fn names_and_tags() {
        let n = host_veth_name("berth", "abc", "eth0");
        assert_eq!(n.len(), 15);
        assert!(n.starts_with("berth"));
        assert_eq!(n, host_veth_name("berth", "abc", "eth0"));
        assert_ne!(n, host_veth_name("berth", "abc", "eth1"));
        let ifb = ifb_name("berth", "abc", "eth0");
        assert_eq!(ifb.len(), 15);
        assert!(ifb.starts_with("bwp"));
        assert!(validate_ifname(&ifb).is_ok());
        assert_ne!(ifb, ifb_name("berth", "abc", "eth1"));
        assert_ne!(ifb, ifb_name("other", "abc", "eth0"));
        // Stable across releases: DEL of a newer binary must find it.
        assert_eq!(fnv1a(&["a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(attachment_tag("net", "cid", "eth0"), "berth:net:cid/eth0");
        let long = "x".repeat(200);
        assert!(attachment_tag("net", &long, "eth0").len() <= 127);
        assert!(attachment_tag(&long, "cid", "eth0").len() <= 127);
        assert!(attachment_tag("net", "cid", "eth0").starts_with(&attachment_tag_prefix("net")));
        assert!(!network_rule_prefix("net").starts_with(&attachment_tag_prefix("net")));
    }
}
