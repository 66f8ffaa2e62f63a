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

// netlink
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;

// nfnetlink
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

// nf_tables messages
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_GETGEN: u16 = 16;

// attributes
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFTNL_UDATA_RULE_COMMENT: u8 = 0;

// registers and verdicts
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NFT_JUMP: i32 = -3;

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

/// A growable netlink attribute buffer.
#[derive(Debug, Default)]
struct Attrs(Vec<u8>);

impl Attrs {
    fn put(&mut self, kind: u16, value: &[u8]) {
        let len = 4 + value.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }

    fn str(&mut self, kind: u16, value: &str) {
        let mut v = value.as_bytes().to_vec();
        v.push(0);
        self.put(kind, &v);
    }

    fn u32be(&mut self, kind: u16, value: u32) {
        self.put(kind, &value.to_be_bytes());
    }

    fn nested(&mut self, kind: u16, f: impl FnOnce(&mut Attrs)) {
        let mut inner = Attrs::default();
        f(&mut inner);
        self.put(kind | NLA_F_NESTED, &inner.0);
    }

    fn data(&mut self, kind: u16, value: &[u8]) {
        self.nested(kind, |a| a.put(NFTA_DATA_VALUE, value));
    }
}

fn encode_expr(list: &mut Attrs, expr: &Expr) {
    // (name, attributes)
    let mut d = Attrs::default();
    let name = match expr {
        Expr::Meta(key) => {
            d.u32be(1, NFT_REG_1); // NFTA_META_DREG
            d.u32be(2, *key as u32); // NFTA_META_KEY
            "meta"
        }
        Expr::Payload { base, offset, len } => {
            d.u32be(1, NFT_REG_1); // NFTA_PAYLOAD_DREG
            d.u32be(2, *base as u32); // NFTA_PAYLOAD_BASE
            d.u32be(3, *offset); // NFTA_PAYLOAD_OFFSET
            d.u32be(4, *len); // NFTA_PAYLOAD_LEN
            "payload"
        }
        Expr::Cmp(op, data) => {
            d.u32be(1, NFT_REG_1); // NFTA_CMP_SREG
            d.u32be(2, *op as u32); // NFTA_CMP_OP
            d.data(3, data); // NFTA_CMP_DATA
            "cmp"
        }
        Expr::Mask(mask) => {
            d.u32be(1, NFT_REG_1); // NFTA_BITWISE_SREG
            d.u32be(2, NFT_REG_1); // NFTA_BITWISE_DREG
            d.u32be(3, mask.len() as u32); // NFTA_BITWISE_LEN
            d.data(4, mask); // NFTA_BITWISE_MASK
            d.data(5, &vec![0u8; mask.len()]); // NFTA_BITWISE_XOR
            "bitwise"
        }
        Expr::CtStatus => {
            d.u32be(1, NFT_REG_1); // NFTA_CT_DREG
            d.u32be(2, 2); // NFTA_CT_KEY = NFT_CT_STATUS
            "ct"
        }
        Expr::FibDaddrType => {
            d.u32be(1, NFT_REG_1); // NFTA_FIB_DREG
            d.u32be(2, 3); // NFTA_FIB_RESULT = NFT_FIB_RESULT_ADDRTYPE
            d.u32be(3, 2); // NFTA_FIB_FLAGS = NFTA_FIB_F_DADDR
            "fib"
        }
        Expr::Counter => "counter",
        Expr::Masquerade => "masq",
        Expr::Jump(chain) => {
            d.u32be(1, NFT_REG_VERDICT); // NFTA_IMMEDIATE_DREG
            d.nested(2, |data| {
                data.nested(NFTA_DATA_VERDICT, |v| {
                    v.u32be(NFTA_VERDICT_CODE, NFT_JUMP as u32);
                    v.str(NFTA_VERDICT_CHAIN, chain);
                });
            });
            "immediate"
        }
        Expr::Drop => {
            d.u32be(1, NFT_REG_VERDICT);
            d.nested(2, |data| {
                data.nested(NFTA_DATA_VERDICT, |v| v.u32be(NFTA_VERDICT_CODE, NF_DROP));
            });
            "immediate"
        }
        Expr::Dnat(ip, port) => {
            // Two immediates then the nat expression.
            let (family, bytes) = match ip {
                IpAddr::V4(a) => (NFPROTO_IPV4, a.octets().to_vec()),
                IpAddr::V6(a) => (NFPROTO_IPV6, a.octets().to_vec()),
            };
            let mut imm = Attrs::default();
            imm.u32be(1, NFT_REG_1);
            imm.data(2, &bytes);
            push_expr(list, "immediate", &imm);
            let mut imm = Attrs::default();
            imm.u32be(1, NFT_REG_2);
            imm.data(2, &port.to_be_bytes());
            push_expr(list, "immediate", &imm);
            d.u32be(1, 1); // NFTA_NAT_TYPE = NFT_NAT_DNAT
            d.u32be(2, u32::from(family)); // NFTA_NAT_FAMILY
            d.u32be(3, NFT_REG_1); // NFTA_NAT_REG_ADDR_MIN
            d.u32be(5, NFT_REG_2); // NFTA_NAT_REG_PROTO_MIN
            d.u32be(7, 0x2); // NFTA_NAT_FLAGS = NF_NAT_RANGE_PROTO_SPECIFIED
            "nat"
        }
    };
    push_expr(list, name, &d);
}

fn push_expr(list: &mut Attrs, name: &str, data: &Attrs) {
    list.nested(NFTA_LIST_ELEM, |e| {
        e.str(NFTA_EXPR_NAME, name);
        if !data.0.is_empty() {
            e.put(NFTA_EXPR_DATA | NLA_F_NESTED, &data.0);
        }
    });
}

/// The comment userdata TLV nft uses.
fn comment_userdata(tag: &str) -> Vec<u8> {
    let bytes = &tag.as_bytes()[..tag.len().min(254)];
    let mut v = vec![NFTNL_UDATA_RULE_COMMENT, (bytes.len() + 1) as u8];
    v.extend_from_slice(bytes);
    v.push(0);
    v
}

fn parse_comment(userdata: &[u8]) -> Option<String> {
    let mut rest = userdata;
    while rest.len() >= 2 {
        let (kind, len) = (rest[0], usize::from(rest[1]));
        let value = rest.get(2..2 + len)?;
        if kind == NFTNL_UDATA_RULE_COMMENT {
            let value = value.strip_suffix(&[0]).unwrap_or(value);
            return String::from_utf8(value.to_vec()).ok();
        }
        rest = &rest[2 + len..];
    }
    None
}

/// Appends one netlink message (header + nfgenmsg + attributes).
fn push_msg(
    buf: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &[u8],
) {
    let len = NLMSG_HDRLEN + 4 + attrs.len();
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.push(family);
    buf.push(0); // NFNETLINK_V0
    buf.extend_from_slice(&res_id.to_be_bytes());
    buf.extend_from_slice(attrs);
}

fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

/// Encodes one operation: (message type, extra flags, attributes).
fn encode_op(table: &str, op: &Op) -> (u16, u16, Vec<u8>) {
    let mut a = Attrs::default();
    match op {
        Op::AddTable => {
            a.str(NFTA_TABLE_NAME, table);
            a.u32be(NFTA_TABLE_FLAGS, 0);
            (NFT_MSG_NEWTABLE, NLM_F_CREATE, a.0)
        }
        Op::AddChain(spec) => {
            a.str(NFTA_CHAIN_TABLE, table);
            a.str(NFTA_CHAIN_NAME, spec.name);
            if let Some((kind, hook, prio)) = spec.base {
                a.nested(NFTA_CHAIN_HOOK, |h| {
                    h.u32be(NFTA_HOOK_HOOKNUM, hook as u32);
                    h.u32be(NFTA_HOOK_PRIORITY, prio as u32);
                });
                a.u32be(NFTA_CHAIN_POLICY, NF_ACCEPT);
                a.str(NFTA_CHAIN_TYPE, kind);
            }
            (NFT_MSG_NEWCHAIN, NLM_F_CREATE, a.0)
        }
        Op::FlushChain(chain) => {
            a.str(NFTA_RULE_TABLE, table);
            a.str(NFTA_RULE_CHAIN, chain);
            (NFT_MSG_DELRULE, 0, a.0)
        }
        Op::AddRule(rule) => {
            a.str(NFTA_RULE_TABLE, table);
            a.str(NFTA_RULE_CHAIN, rule.chain);
            let mut list = Attrs::default();
            for e in &rule.exprs {
                encode_expr(&mut list, e);
            }
            a.put(NFTA_RULE_EXPRESSIONS | NLA_F_NESTED, &list.0);
            a.put(NFTA_RULE_USERDATA, &comment_userdata(&rule.tag));
            (NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, a.0)
        }
        Op::DelRule { chain, handle } => {
            a.str(NFTA_RULE_TABLE, table);
            a.str(NFTA_RULE_CHAIN, chain);
            a.put(NFTA_RULE_HANDLE, &handle.to_be_bytes());
            (NFT_MSG_DELRULE, 0, a.0)
        }
    }
}

/// Iterates the attributes of a buffer: (type without flags, value).
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            return None;
        }
        let value = &buf[4..len];
        let aligned = (len + 3) & !3;
        buf = &buf[aligned.min(buf.len())..];
        Some((kind, value))
    })
}

fn cstr(value: &[u8]) -> String {
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

/// One parsed netlink message: (type, seq, payload after the header).
fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let seq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let payload = &buf[NLMSG_HDRLEN..len];
        let aligned = (len + 3) & !3;
        buf = &buf[aligned.min(buf.len())..];
        Some((kind, seq, payload))
    })
}

fn errno_of(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

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

fn parse_rule(payload: &[u8], table: &str) -> Option<ListedRule> {
    let body = payload.get(4..)?; // skip nfgenmsg
    let (mut t, mut chain, mut handle, mut tag) = (None, None, None, None);
    for (kind, value) in attrs(body) {
        match kind {
            NFTA_RULE_TABLE => t = Some(cstr(value)),
            NFTA_RULE_CHAIN => chain = Some(cstr(value)),
            NFTA_RULE_HANDLE if value.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(value);
                handle = Some(u64::from_be_bytes(b));
            }
            NFTA_RULE_USERDATA => tag = parse_comment(value),
            _ => {}
        }
    }
    // Family inet was requested; the table filter is applied by the kernel,
    // checked again here in case an old kernel ignores it.
    if t.as_deref() != Some(table) {
        return None;
    }
    Some(ListedRule {
        chain: chain?,
        handle: handle?,
        tag,
    })
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
