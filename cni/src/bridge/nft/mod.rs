//! nftables over netlink (`NETLINK_NETFILTER`), written by hand: no `nft`
//! binary, no libnftnl. Only what berth-bridge needs is here: creating a table
//! and chains, appending rules built from a small set of expressions, listing
//! a table's rules (handle, chain, comment) and deleting rules by handle, all
//! in atomic batches.
//!
//! Why by hand: the one Rust crate that programs nftables over netlink,
//! `rustables`, is GPL-3.0-or-later (berth is Apache-2.0) and needs libclang
//! for bindgen at build time; the messages needed here are few and simple.
//! The encodings follow `nft --debug=netlink` and the kernel's
//! `include/uapi/linux/netfilter/nf_tables.h`; rules carry their tag as the
//! standard nft comment (userdata TLV type 0), so `nft list ruleset` shows
//! them as `comment "berth:..."`.

use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rscni_types::ipnet::IpNet;
use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, netlink,
    netlink::SocketAddrNetlink, sockopt,
};

use super::error::BridgeError;

mod wire;

use wire::*;

/// Netfilter hooks of the inet family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting = 0,
    Output = 3,
    Postrouting = 4,
}

/// A chain of berth's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSpec {
    pub name: &'static str,
    /// Base chain: (type, hook, priority); `None` for a regular chain.
    pub base: Option<(&'static str, Hook, i32)>,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq = 0,
    Neq = 1,
}

/// `meta` keys used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    Iifname = 6,
    Oifname = 7,
    Nfproto = 15,
    L4proto = 16,
}

/// Payload bases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    Network = 1,
    Transport = 2,
}

/// The expressions berth's rules are made of. Loads and comparisons all use
/// register 1; NAT addresses go in register 1, ports in register 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Meta(MetaKey),
    Payload {
        base: Base,
        offset: u32,
        len: u32,
    },
    Cmp(CmpOp, Vec<u8>),
    /// `reg1 = (reg1 & mask) ^ 0`
    Mask(Vec<u8>),
    /// `ct status` into register 1.
    CtStatus,
    /// `fib daddr type` into register 1.
    FibDaddrType,
    Counter,
    Jump(String),
    Drop,
    Masquerade,
    /// Destination NAT to `addr:port`.
    Dnat(IpAddr, u16),
}

/// A rule to append: chain, expressions and its tag (the nft comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub chain: &'static str,
    pub exprs: Vec<Expr>,
    pub tag: String,
}

/// A rule as listed from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRule {
    pub chain: String,
    pub handle: u64,
    pub tag: Option<String>,
}

/// One change of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create the table if missing.
    AddTable,
    /// Create the chain if missing.
    AddChain(ChainSpec),
    /// Remove every rule of a chain.
    FlushChain(&'static str),
    /// Append a rule.
    AddRule(Rule),
    /// Delete a rule by handle.
    DelRule { chain: String, handle: u64 },
}

// ---- expression helpers ---------------------------------------------------

/// `meta nfproto ipv4|ipv6`
pub fn nfproto(v6: bool) -> Vec<Expr> {
    vec![
        Expr::Meta(MetaKey::Nfproto),
        Expr::Cmp(
            CmpOp::Eq,
            vec![if v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 }],
        ),
    ]
}

/// `meta l4proto <proto>`
pub fn l4proto(proto: u8) -> Vec<Expr> {
    vec![
        Expr::Meta(MetaKey::L4proto),
        Expr::Cmp(CmpOp::Eq, vec![proto]),
    ]
}

/// `th dport <port>`
pub fn th_dport(port: u16) -> Vec<Expr> {
    vec![
        Expr::Payload {
            base: Base::Transport,
            offset: 2,
            len: 2,
        },
        Expr::Cmp(CmpOp::Eq, port.to_be_bytes().to_vec()),
    ]
}

/// `ip|ip6 saddr|daddr [!=] <net>` (a host address is a full-length prefix).
/// Byte-aligned prefixes load only the prefix bytes, as nft does.
pub fn addr(daddr: bool, op: CmpOp, net: IpNet) -> Vec<Expr> {
    let (offset, bytes) = match (net, daddr) {
        (IpNet::V4(n), false) => (12, n.network().octets().to_vec()),
        (IpNet::V4(n), true) => (16, n.network().octets().to_vec()),
        (IpNet::V6(n), false) => (8, n.network().octets().to_vec()),
        (IpNet::V6(n), true) => (24, n.network().octets().to_vec()),
    };
    let prefix = usize::from(net.prefix_len());
    if prefix % 8 == 0 {
        let len = prefix / 8;
        vec![
            Expr::Payload {
                base: Base::Network,
                offset,
                len: len as u32,
            },
            Expr::Cmp(op, bytes[..len].to_vec()),
        ]
    } else {
        let mask: Vec<u8> = (0..bytes.len())
            .map(|i| {
                let bits = prefix.saturating_sub(i * 8).min(8);
                (0xffu16 << (8 - bits)) as u8
            })
            .collect();
        vec![
            Expr::Payload {
                base: Base::Network,
                offset,
                len: bytes.len() as u32,
            },
            Expr::Mask(mask),
            Expr::Cmp(op, bytes),
        ]
    }
}

/// `ip|ip6 daddr <ip>`
pub fn daddr_is(ip: IpAddr) -> Vec<Expr> {
    addr(true, CmpOp::Eq, IpNet::from(ip))
}

/// `iifname|oifname "<name>"`
pub fn ifname(input: bool, name: &str) -> Vec<Expr> {
    let mut bytes = vec![0u8; 16];
    let n = name.len().min(15);
    bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
    vec![
        Expr::Meta(if input {
            MetaKey::Iifname
        } else {
            MetaKey::Oifname
        }),
        Expr::Cmp(CmpOp::Eq, bytes),
    ]
}

/// `ct status dnat`
pub fn ct_status_dnat() -> Vec<Expr> {
    const IPS_DST_NAT: u32 = 0x20;
    vec![
        Expr::CtStatus,
        Expr::Mask(IPS_DST_NAT.to_ne_bytes().to_vec()),
        Expr::Cmp(CmpOp::Neq, 0u32.to_ne_bytes().to_vec()),
    ]
}

/// `fib daddr type local`
pub fn fib_daddr_local() -> Vec<Expr> {
    const RTN_LOCAL: u32 = 2;
    vec![
        Expr::FibDaddrType,
        Expr::Cmp(CmpOp::Eq, RTN_LOCAL.to_ne_bytes().to_vec()),
    ]
}

// ---- encoding ---------------------------------------------------------------

/// A netlink socket talking to nf_tables, bound to one `inet` table.
#[derive(Debug)]
pub struct Nft {
    fd: OwnedFd,
    table: String,
    seq: u32,
}

/// The kernel's answer to a failed batch: the errno and which operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    pub errno: i32,
    pub op: Option<Op>,
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let err = std::io::Error::from_raw_os_error(self.errno);
        match &self.op {
            Some(op) => write!(f, "{err} (in {op:?})"),
            None => write!(f, "{err}"),
        }
    }
}

impl Nft {
    /// Opens the socket. `table` is the `inet` table every operation uses.
    pub fn open(table: &str) -> Result<Self, BridgeError> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            Some(netlink::NETFILTER),
        )
        .map_err(|e| BridgeError::Nft(format!("opening a netfilter netlink socket: {e}")))?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0))
            .map_err(|e| BridgeError::Nft(format!("binding the netlink socket: {e}")))?;
        sockopt::set_socket_timeout(&fd, sockopt::Timeout::Recv, Some(Duration::from_secs(10)))
            .map_err(|e| BridgeError::Nft(format!("setting a receive timeout: {e}")))?;
        let _ = sockopt::set_socket_recv_buffer_size(&fd, 1 << 20);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() | 1);
        Ok(Self {
            fd,
            table: table.to_string(),
            seq: seed,
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&self, buf: &[u8]) -> Result<(), BridgeError> {
        let sent = rustix::net::send(&self.fd, buf, SendFlags::empty())
            .map_err(|e| BridgeError::Nft(format!("sending to netlink: {e}")))?;
        if sent != buf.len() {
            return Err(BridgeError::Nft("short netlink send".into()));
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8]) -> Result<usize, BridgeError> {
        let (n, _) = rustix::net::recv(&self.fd, &mut *buf, RecvFlags::empty())
            .map_err(|e| BridgeError::Nft(format!("receiving from netlink: {e}")))?;
        Ok(n)
    }

    /// Whether nf_tables answers at all (STATUS).
    pub fn probe(&mut self) -> Result<(), BridgeError> {
        let seq = self.next_seq();
        let mut buf = Vec::new();
        push_msg(
            &mut buf,
            nft_type(NFT_MSG_GETGEN),
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            0,
            0,
            &[],
        );
        self.send(&buf)?;
        let mut rx = vec![0u8; 8192];
        loop {
            let n = self.recv(&mut rx)?;
            for (kind, s, payload) in messages(&rx[..n]) {
                if s != seq {
                    continue;
                }
                if kind == NLMSG_ERROR {
                    let errno = errno_of(payload);
                    if errno == 0 {
                        return Ok(());
                    }
                    return Err(BridgeError::Nft(format!(
                        "nf_tables is not usable: {}",
                        std::io::Error::from_raw_os_error(-errno)
                    )));
                }
            }
        }
    }

    /// Applies `ops` atomically: all or nothing.
    pub fn apply(&mut self, ops: &[Op]) -> Result<(), BatchError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        let mut seqs = Vec::with_capacity(ops.len());
        let begin = self.next_seq();
        push_msg(
            &mut buf,
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            begin,
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
        for op in ops {
            let seq = self.next_seq();
            let (msg, flags, attrs) = encode_op(&self.table, op);
            push_msg(
                &mut buf,
                nft_type(msg),
                NLM_F_REQUEST | NLM_F_ACK | flags,
                seq,
                NFPROTO_INET,
                0,
                &attrs,
            );
            seqs.push(seq);
        }
        let end = self.next_seq();
        push_msg(
            &mut buf,
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            end,
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
        self.send(&buf).map_err(|_| BatchError {
            errno: libc_errno(&std::io::Error::last_os_error()),
            op: None,
        })?;

        // Every operation gets exactly one answer (an ACK or its error); the
        // batch messages only answer when they fail.
        let mut pending: std::collections::HashSet<u32> = seqs.iter().copied().collect();
        let mut first_error: Option<BatchError> = None;
        let mut rx = vec![0u8; 65536];
        while !pending.is_empty() {
            let n = self.recv(&mut rx).map_err(|_| BatchError {
                errno: libc_errno(&std::io::Error::last_os_error()),
                op: None,
            })?;
            for (kind, seq, payload) in messages(&rx[..n]) {
                if kind != NLMSG_ERROR {
                    continue;
                }
                let errno = -errno_of(payload);
                if seq == begin || seq == end {
                    if errno != 0 {
                        return Err(BatchError { errno, op: None });
                    }
                    continue;
                }
                if pending.remove(&seq) && errno != 0 && first_error.is_none() {
                    let op = seqs.iter().position(|s| *s == seq).map(|i| ops[i].clone());
                    first_error = Some(BatchError { errno, op });
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Lists the rules of the table (empty when the table does not exist).
    pub fn list_rules(&mut self) -> Result<Vec<ListedRule>, BridgeError> {
        let seq = self.next_seq();
        let mut a = Attrs::default();
        a.str(NFTA_RULE_TABLE, &self.table);
        let mut buf = Vec::new();
        push_msg(
            &mut buf,
            nft_type(NFT_MSG_GETRULE),
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            NFPROTO_INET,
            0,
            &a.0,
        );
        self.send(&buf)?;
        let mut out = Vec::new();
        let mut rx = vec![0u8; 1 << 17];
        loop {
            let n = self.recv(&mut rx)?;
            for (kind, s, payload) in messages(&rx[..n]) {
                if s != seq {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let errno = -errno_of(payload);
                        if errno == 0 || errno == 2 {
                            // ENOENT: no such table, so no rules.
                            return Ok(out);
                        }
                        return Err(BridgeError::Nft(format!(
                            "listing rules of table inet {}: {}",
                            self.table,
                            std::io::Error::from_raw_os_error(errno)
                        )));
                    }
                    k if k == nft_type(NFT_MSG_NEWRULE) => {
                        if let Some(rule) = parse_rule(payload, &self.table) {
                            out.push(rule);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn libc_errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matches_like_nft() {
        // /16: a 2-byte load, no mask.
        let e = addr(false, CmpOp::Eq, "10.99.0.0/16".parse().expect("net"));
        assert_eq!(
            e,
            vec![
                Expr::Payload {
                    base: Base::Network,
                    offset: 12,
                    len: 2
                },
                Expr::Cmp(CmpOp::Eq, vec![10, 99])
            ]
        );
        // /20: a full load with a mask.
        let e = addr(true, CmpOp::Neq, "10.99.16.0/20".parse().expect("net"));
        assert_eq!(e[1], Expr::Mask(vec![255, 255, 240, 0]));
        assert_eq!(e[2], Expr::Cmp(CmpOp::Neq, vec![10, 99, 16, 0]));
        // A v6 host address: 16 bytes at offset 24.
        let e = daddr_is("fd00::5".parse().expect("ip"));
        assert!(matches!(
            e[0],
            Expr::Payload {
                offset: 24,
                len: 16,
                ..
            }
        ));
    }

    #[test]
    fn comments_round_trip() {
        let ud = comment_userdata("berth:net:cid/eth0");
        assert_eq!(&ud[..2], &[0, 19]);
        assert_eq!(parse_comment(&ud).as_deref(), Some("berth:net:cid/eth0"));
        assert_eq!(parse_comment(&[1, 2, 9, 9]), None);
    }

    #[test]
    fn encodes_a_rule_and_parses_its_listing() {
        let rule = Rule {
            chain: "hostports",
            exprs: [nfproto(false), l4proto(6), th_dport(8080)]
                .concat()
                .into_iter()
                .chain([
                    Expr::Counter,
                    Expr::Dnat("10.0.0.5".parse().expect("ip"), 80),
                ])
                .collect(),
            tag: "berth:n:c/eth0".into(),
        };
        let (kind, flags, attrs_buf) = encode_op("t", &Op::AddRule(rule));
        assert_eq!(kind, NFT_MSG_NEWRULE);
        assert_eq!(flags, NLM_F_CREATE | NLM_F_APPEND);
        let top: Vec<_> = attrs(&attrs_buf).map(|(k, _)| k).collect();
        assert_eq!(
            top,
            vec![
                NFTA_RULE_TABLE,
                NFTA_RULE_CHAIN,
                NFTA_RULE_EXPRESSIONS,
                NFTA_RULE_USERDATA
            ]
        );
        let exprs = attrs(&attrs_buf)
            .find(|(k, _)| *k == NFTA_RULE_EXPRESSIONS)
            .map(|(_, v)| v)
            .expect("exprs");
        let names: Vec<String> = attrs(exprs)
            .map(|(_, e)| {
                attrs(e)
                    .find(|(k, _)| *k == NFTA_EXPR_NAME)
                    .map(|(_, v)| cstr(v))
                    .expect("name")
            })
            .collect();
        assert_eq!(
            names,
            [
                "meta",
                "cmp",
                "meta",
                "cmp",
                "payload",
                "cmp",
                "counter",
                "immediate",
                "immediate",
                "nat"
            ]
        );

        // A listed rule as the kernel sends it: nfgenmsg + attributes.
        let mut a = Attrs::default();
        a.str(NFTA_RULE_TABLE, "t");
        a.str(NFTA_RULE_CHAIN, "hostports");
        a.put(NFTA_RULE_HANDLE, &7u64.to_be_bytes());
        a.put(NFTA_RULE_USERDATA, &comment_userdata("berth:n:c/eth0"));
        let mut payload = vec![NFPROTO_INET, 0, 0, 0];
        payload.extend_from_slice(&a.0);
        assert_eq!(
            parse_rule(&payload, "t"),
            Some(ListedRule {
                chain: "hostports".into(),
                handle: 7,
                tag: Some("berth:n:c/eth0".into())
            })
        );
        assert_eq!(parse_rule(&payload, "other"), None);
    }
}
