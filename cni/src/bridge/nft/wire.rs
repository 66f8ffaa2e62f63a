//! The nf_tables netlink wire format: message and attribute constants
//! (`include/uapi/linux/netfilter/nf_tables.h`), encoding expressions,
//! rules and batches, and parsing the kernel's answers and rule listings.

use super::*;

// netlink
pub(super) const NLMSG_HDRLEN: usize = 16;
pub(super) const NLMSG_ERROR: u16 = 2;
pub(super) const NLMSG_DONE: u16 = 3;
pub(super) const NLM_F_REQUEST: u16 = 0x1;
pub(super) const NLM_F_ACK: u16 = 0x4;
pub(super) const NLM_F_DUMP: u16 = 0x300;
pub(super) const NLM_F_CREATE: u16 = 0x400;
pub(super) const NLM_F_APPEND: u16 = 0x800;
pub(super) const NLA_F_NESTED: u16 = 0x8000;

// nfnetlink
pub(super) const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub(super) const NFNL_MSG_BATCH_END: u16 = 0x11;
pub(super) const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub(super) const NFPROTO_INET: u8 = 1;
pub(super) const NFPROTO_IPV4: u8 = 2;
pub(super) const NFPROTO_IPV6: u8 = 10;

// nf_tables messages
pub(super) const NFT_MSG_NEWTABLE: u16 = 0;
pub(super) const NFT_MSG_NEWCHAIN: u16 = 3;
pub(super) const NFT_MSG_NEWRULE: u16 = 6;
pub(super) const NFT_MSG_GETRULE: u16 = 7;
pub(super) const NFT_MSG_DELRULE: u16 = 8;
pub(super) const NFT_MSG_GETGEN: u16 = 16;

// attributes
pub(super) const NFTA_TABLE_NAME: u16 = 1;
pub(super) const NFTA_TABLE_FLAGS: u16 = 2;
pub(super) const NFTA_CHAIN_TABLE: u16 = 1;
pub(super) const NFTA_CHAIN_NAME: u16 = 3;
pub(super) const NFTA_CHAIN_HOOK: u16 = 4;
pub(super) const NFTA_CHAIN_POLICY: u16 = 5;
pub(super) const NFTA_CHAIN_TYPE: u16 = 7;
pub(super) const NFTA_HOOK_HOOKNUM: u16 = 1;
pub(super) const NFTA_HOOK_PRIORITY: u16 = 2;
pub(super) const NFTA_RULE_TABLE: u16 = 1;
pub(super) const NFTA_RULE_CHAIN: u16 = 2;
pub(super) const NFTA_RULE_HANDLE: u16 = 3;
pub(super) const NFTA_RULE_EXPRESSIONS: u16 = 4;
pub(super) const NFTA_RULE_USERDATA: u16 = 7;
pub(super) const NFTA_LIST_ELEM: u16 = 1;
pub(super) const NFTA_EXPR_NAME: u16 = 1;
pub(super) const NFTA_EXPR_DATA: u16 = 2;
pub(super) const NFTA_DATA_VALUE: u16 = 1;
pub(super) const NFTA_DATA_VERDICT: u16 = 2;
pub(super) const NFTA_VERDICT_CODE: u16 = 1;
pub(super) const NFTA_VERDICT_CHAIN: u16 = 2;
pub(super) const NFTNL_UDATA_RULE_COMMENT: u8 = 0;

// registers and verdicts
pub(super) const NFT_REG_VERDICT: u32 = 0;
pub(super) const NFT_REG_1: u32 = 1;
pub(super) const NFT_REG_2: u32 = 2;
pub(super) const NF_DROP: u32 = 0;
pub(super) const NF_ACCEPT: u32 = 1;
pub(super) const NFT_JUMP: i32 = -3;

/// A growable netlink attribute buffer.
#[derive(Debug, Default)]
pub(super) struct Attrs(pub(super) Vec<u8>);

impl Attrs {
    pub(super) fn put(&mut self, kind: u16, value: &[u8]) {
        let len = 4 + value.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.pad();
    }

    pub(super) fn pad(&mut self) {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }

    pub(super) fn str(&mut self, kind: u16, value: &str) {
        let mut v = value.as_bytes().to_vec();
        v.push(0);
        self.put(kind, &v);
    }

    pub(super) fn u32be(&mut self, kind: u16, value: u32) {
        self.put(kind, &value.to_be_bytes());
    }

    pub(super) fn nested(&mut self, kind: u16, f: impl FnOnce(&mut Attrs)) {
        let mut inner = Attrs::default();
        f(&mut inner);
        self.put(kind | NLA_F_NESTED, &inner.0);
    }

    pub(super) fn data(&mut self, kind: u16, value: &[u8]) {
        self.nested(kind, |a| a.put(NFTA_DATA_VALUE, value));
    }
}

pub(super) fn encode_expr(list: &mut Attrs, expr: &Expr) {
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

pub(super) fn push_expr(list: &mut Attrs, name: &str, data: &Attrs) {
    list.nested(NFTA_LIST_ELEM, |e| {
        e.str(NFTA_EXPR_NAME, name);
        if !data.0.is_empty() {
            e.put(NFTA_EXPR_DATA | NLA_F_NESTED, &data.0);
        }
    });
}

/// The comment userdata TLV nft uses.
pub(super) fn comment_userdata(tag: &str) -> Vec<u8> {
    let bytes = &tag.as_bytes()[..tag.len().min(254)];
    let mut v = vec![NFTNL_UDATA_RULE_COMMENT, (bytes.len() + 1) as u8];
    v.extend_from_slice(bytes);
    v.push(0);
    v
}

pub(super) fn parse_comment(userdata: &[u8]) -> Option<String> {
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
pub(super) fn push_msg(
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

pub(super) fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

/// Encodes one operation: (message type, extra flags, attributes).
pub(super) fn encode_op(table: &str, op: &Op) -> (u16, u16, Vec<u8>) {
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
pub(super) fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
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

pub(super) fn cstr(value: &[u8]) -> String {
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

/// One parsed netlink message: (type, seq, payload after the header).
pub(super) fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
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

pub(super) fn errno_of(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

pub(super) fn parse_rule(payload: &[u8], table: &str) -> Option<ListedRule> {
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
