//! Traffic control over rtnetlink, what `tc` would do without running it:
//! a TBF qdisc at a link's root, the ingress qdisc with a u32 filter that
//! redirects everything to an ifb device, the ifb device itself, and
//! reading them back for CHECK.
//!
//! netlink-packet-route has no TBF type: its options are encoded here
//! (`struct tc_tbf_qopt` in `TCA_TBF_PARMS`, `TCA_TBF_RATE64`) and read
//! back from the raw nested attributes.

use futures_util::{StreamExt, TryStreamExt};
use rtnetlink::packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage,
    NetlinkPayload, Nla, NlasIterator,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute};
use rtnetlink::packet_route::tc::{
    TcActionAttribute, TcActionMirrorOption, TcActionOption, TcAttribute, TcFilterU32Option,
    TcHandle, TcMessage, TcMirrorActionType, TcOption,
};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec};

use super::bandwidth::Tbf;
use super::error::BridgeError;
use super::link::Link;

const TCA_OPTIONS: u16 = 2;
const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TC_LINKLAYER_ETHERNET: u8 = 1;
const ETH_P_ALL: u16 = 0x0003;
const EEXIST: i32 = 17;
const EINVAL: i32 = 22;
const EOPNOTSUPP: i32 = 95;
/// The ingress qdisc's handle, `ffff:`.
const INGRESS_HANDLE: u32 = 0xffff_0000;
/// The redirect filter's priority (`tc filter ... prio 1`).
const FILTER_PRIO: u16 = 1;
/// The ifb device's queue length: the kernel's default for ifb (32) is
/// too short for the traffic of a pod (and the reference plugin sets at
/// least 1000).
const IFB_TXQLEN: u32 = 1000;

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

fn shaping_err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> BridgeError {
    BridgeError::Shaping(format!("{what}: {e}"))
}

/// Sends one request and waits for its acknowledgement.
async fn request(h: &Handle, msg: RouteNetlinkMessage, flags: u16) -> Result<(), rtnetlink::Error> {
    let mut req = NetlinkMessage::from(msg);
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    let mut responses = h.clone().request(req)?;
    while let Some(m) = responses.next().await {
        if let NetlinkPayload::Error(e) = m.payload
            && e.code.is_some()
        {
            return Err(rtnetlink::Error::NetlinkError(e));
        }
    }
    Ok(())
}

/// Dumps qdiscs or filters (`msg` says which and of what parent).
async fn dump(h: &Handle, msg: RouteNetlinkMessage) -> Result<Vec<TcMessage>, rtnetlink::Error> {
    let mut req = NetlinkMessage::from(msg);
    req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut responses = h.clone().request(req)?;
    let mut out = Vec::new();
    while let Some(m) = responses.next().await {
        match m.payload {
            NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewQueueDiscipline(t)
                | RouteNetlinkMessage::NewTrafficFilter(t),
            ) => out.push(t),
            NetlinkPayload::Error(e) if e.code.is_some() => {
                return Err(rtnetlink::Error::NetlinkError(e));
            }
            _ => {}
        }
    }
    Ok(out)
}

fn ifindex(index: u32) -> i32 {
    // Kernel interface indexes are positive ints.
    i32::try_from(index).unwrap_or(i32::MAX)
}

/// `struct tc_tbf_qopt`: rate and peak rate (`struct tc_ratespec`, 12
/// bytes each), limit, buffer, mtu; native byte order.
pub fn tbf_qopt(tbf: &Tbf) -> Vec<u8> {
    let mut b = vec![0u8; 36];
    b[1] = TC_LINKLAYER_ETHERNET;
    let rate32 = u32::try_from(tbf.rate).unwrap_or(u32::MAX);
    b[8..12].copy_from_slice(&rate32.to_ne_bytes());
    b[24..28].copy_from_slice(&tbf.limit.to_ne_bytes());
    b[28..32].copy_from_slice(&tbf.buffer.to_ne_bytes());
    b
}

/// `tc qdisc replace dev <index> root handle 1: tbf ...`.
pub async fn set_root_tbf(h: &Handle, index: u32, tbf: &Tbf) -> Result<(), BridgeError> {
    let mut msg = TcMessage::with_index(ifindex(index));
    msg.header.parent = TcHandle::ROOT;
    msg.header.handle = TcHandle { major: 1, minor: 0 };
    msg.attributes.push(TcAttribute::Kind("tbf".into()));
    let mut opts = vec![TcOption::Other(DefaultNla::new(
        TCA_TBF_PARMS,
        tbf_qopt(tbf),
    ))];
    if tbf.rate > u64::from(u32::MAX) {
        opts.push(TcOption::Other(DefaultNla::new(
            TCA_TBF_RATE64,
            tbf.rate.to_ne_bytes().to_vec(),
        )));
    }
    msg.attributes.push(TcAttribute::Options(opts));
    request(
        h,
        RouteNetlinkMessage::NewQueueDiscipline(msg),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
    .await
    .map_err(|e| shaping_err(format!("adding a tbf qdisc to link #{index}"), e))
}

/// `tc qdisc add dev <index> ingress` (already there is fine), then
/// `tc filter add dev <index> parent ffff: protocol all prio 1 u32 match
/// u32 0 0 action mirred egress redirect dev <to>`.
pub async fn redirect_ingress(h: &Handle, index: u32, to: u32) -> Result<(), BridgeError> {
    match h.qdisc().add(ifindex(index)).ingress().execute().await {
        Ok(()) => {}
        Err(e) if errno(&e) == Some(EEXIST) => {}
        Err(e) => {
            return Err(shaping_err(
                format!("adding the ingress qdisc to link #{index}"),
                e,
            ));
        }
    }
    h.traffic_filter(ifindex(index))
        .add()
        .parent(INGRESS_HANDLE)
        .priority(FILTER_PRIO)
        .protocol(ETH_P_ALL.to_be())
        .redirect(to)
        .map_err(|e| shaping_err("building the redirect filter", e))?
        .execute()
        .await
        .map_err(|e| {
            shaping_err(
                format!("redirecting link #{index}'s ingress to link #{to}"),
                e,
            )
        })
}

/// Creates an ifb device, up, with `mtu`. A kernel without ifb support is
/// named in the error: egress shaping cannot work without it.
pub async fn create_ifb(h: &Handle, name: &str, mtu: u32) -> Result<(), BridgeError> {
    let mut msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Ifb)
        .name(name)
        .mtu(mtu)
        .up()
        .build();
    msg.attributes.push(LinkAttribute::TxQueueLen(IFB_TXQLEN));
    match h.link().add(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(EOPNOTSUPP) => Err(BridgeError::Shaping(format!(
            "creating ifb device {name}: the kernel has no ifb support (the ifb module is \
             not loaded and cannot be loaded: `modprobe ifb`); egress shaping needs it: {e}"
        ))),
        Err(e) if errno(&e) == Some(EEXIST) => Err(BridgeError::Conflict(format!(
            "cannot create ifb device {name}: a link of that name exists"
        ))),
        Err(e) => Err(shaping_err(format!("creating ifb device {name}"), e)),
    }
}

/// Sets a link's alias (how DEL and GC recognise berth-bridge's ifbs).
pub async fn set_alias(h: &Handle, index: u32, alias: &str) -> Result<(), BridgeError> {
    h.link()
        .change(LinkUnspec::new_with_index(index).alias(alias).build())
        .execute()
        .await
        .map_err(|e| shaping_err(format!("tagging link #{index}"), e))
}

/// Every link of the host whose kind is `kind`.
pub async fn links_of_kind(h: &Handle, kind: &str) -> Result<Vec<Link>, BridgeError> {
    let mut out = Vec::new();
    let mut stream = h.link().get().execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| BridgeError::netlink("listing links", e))?
    {
        let l = Link::from_message(&msg);
        if l.is(kind) {
            out.push(l);
        }
    }
    Ok(out)
}

/// A qdisc as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qdisc {
    pub kind: String,
    pub handle: u32,
    pub parent: u32,
    /// For a TBF: rate (bytes/s), buffer (ticks) and limit (bytes).
    pub tbf: Option<Tbf>,
}

/// The qdiscs of a link.
pub async fn qdiscs(h: &Handle, index: u32) -> Result<Vec<Qdisc>, BridgeError> {
    let msg = TcMessage::with_index(ifindex(index));
    let all = dump(h, RouteNetlinkMessage::GetQueueDiscipline(msg))
        .await
        .map_err(|e| shaping_err(format!("listing qdiscs of link #{index}"), e))?;
    Ok(all
        .iter()
        .filter(|m| m.header.index == ifindex(index))
        .map(|m| {
            let kind = m
                .attributes
                .iter()
                .find_map(|a| match a {
                    TcAttribute::Kind(k) => Some(k.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            let tbf = (kind == "tbf").then(|| parse_tbf(m)).flatten();
            Qdisc {
                kind,
                handle: m.header.handle.into(),
                parent: m.header.parent.into(),
                tbf,
            }
        })
        .collect())
}

/// Decodes a TBF's `TCA_OPTIONS` (kept raw by netlink-packet-route).
fn parse_tbf(m: &TcMessage) -> Option<Tbf> {
    let nla = m.attributes.iter().find_map(|a| match a {
        TcAttribute::Options(opts) => opts.iter().find_map(|o| match o {
            TcOption::Other(n) if n.kind() & 0x3fff == TCA_OPTIONS => Some(n),
            _ => None,
        }),
        _ => None,
    })?;
    let mut raw = vec![0u8; nla.value_len()];
    nla.emit_value(&mut raw);
    let (mut parms, mut rate64) = (None, None);
    for attr in NlasIterator::new(&raw[..]) {
        let attr = attr.ok()?;
        let v = attr.value();
        match attr.kind() & 0x3fff {
            TCA_TBF_PARMS if v.len() >= 32 => parms = Some(v.to_vec()),
            TCA_TBF_RATE64 if v.len() >= 8 => {
                rate64 = Some(u64::from_ne_bytes(v[..8].try_into().ok()?));
            }
            _ => {}
        }
    }
    let p = parms?;
    let u32_at =
        |o: usize| -> Option<u32> { Some(u32::from_ne_bytes(p[o..o + 4].try_into().ok()?)) };
    Some(Tbf {
        rate: rate64.unwrap_or(u64::from(u32_at(8)?)),
        limit: u32_at(24)?,
        buffer: u32_at(28)?,
    })
}

/// Whether link `index` has a filter under its ingress qdisc that
/// redirects to link `to`.
pub async fn redirects_to(h: &Handle, index: u32, to: u32) -> Result<bool, BridgeError> {
    let mut msg = TcMessage::with_index(ifindex(index));
    msg.header.parent = TcHandle::from(INGRESS_HANDLE);
    let filters = match dump(h, RouteNetlinkMessage::GetTrafficFilter(msg)).await {
        Ok(f) => f,
        // No ingress qdisc: no filters.
        Err(e) if errno(&e) == Some(EINVAL) => return Ok(false),
        Err(e) => return Err(shaping_err(format!("listing filters of link #{index}"), e)),
    };
    Ok(filters.iter().any(|f| {
        f.attributes.iter().any(|a| match a {
            TcAttribute::Options(opts) => opts.iter().any(|o| match o {
                TcOption::U32(TcFilterU32Option::Action(actions)) => {
                    actions.iter().any(|act| {
                        act.attributes.iter().any(|aa| match aa {
                            TcActionAttribute::Options(ao) => ao.iter().any(|x| {
                                matches!(x, TcActionOption::Mirror(TcActionMirrorOption::Parms(p))
                                    if p.ifindex == to && p.eaction == TcMirrorActionType::EgressRedir)
                            }),
                            _ => false,
                        })
                    })
                }
                _ => false,
            }),
            _ => false,
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qopt_layout() {
        let t = Tbf {
            rate: 125_000,
            buffer: 1_250_000,
            limit: 13_125,
        };
        let b = tbf_qopt(&t);
        assert_eq!(b.len(), 36);
        assert_eq!(b[1], TC_LINKLAYER_ETHERNET);
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 125_000);
        assert_eq!(&b[12..24], &[0u8; 12], "no peak rate");
        assert_eq!(u32::from_ne_bytes(b[24..28].try_into().unwrap()), 13_125);
        assert_eq!(u32::from_ne_bytes(b[28..32].try_into().unwrap()), 1_250_000);
        // Past 32 bits the struct says "see RATE64".
        let fast = tbf_qopt(&Tbf {
            rate: 5_000_000_000,
            ..t
        });
        assert_eq!(
            u32::from_ne_bytes(fast[8..12].try_into().unwrap()),
            u32::MAX
        );
    }

    #[test]
    fn tbf_round_trips_through_its_message() {
        let t = Tbf {
            rate: 5_000_000_000,
            buffer: 3125,
            limit: 126_000_000,
        };
        let mut msg = TcMessage::with_index(3);
        msg.attributes.push(TcAttribute::Kind("tbf".into()));
        msg.attributes.push(TcAttribute::Options(vec![
            TcOption::Other(DefaultNla::new(TCA_TBF_PARMS, tbf_qopt(&t))),
            TcOption::Other(DefaultNla::new(
                TCA_TBF_RATE64,
                t.rate.to_ne_bytes().to_vec(),
            )),
        ]));
        // As the kernel's answer is parsed.
        use rtnetlink::packet_core::{Emitable, Parseable};
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        let parsed = TcMessage::parse(&buf[..]).unwrap();
        assert_eq!(parse_tbf(&parsed), Some(t));
    }
}
