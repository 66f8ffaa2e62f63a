//! An attachment's traffic shaping (the `bandwidth` capability), as the
//! reference `bandwidth` plugin shapes, inside berth-bridge so the default
//! network needs no other plugin binary:
//!
//! - ingress (traffic to the pod): a TBF qdisc at the root of the host
//!   veth, whose egress is the pod's ingress;
//! - egress (traffic from the pod): the host veth's ingress is redirected
//!   (u32 match-all, mirred egress redirect) to the attachment's ifb
//!   device ([`ifb_name`](super::config::ifb_name), tagged with the
//!   attachment's alias), which has a TBF qdisc at its root.
//!
//! The veth's qdiscs and filter go with the veth; DEL and GC delete the
//! ifb device.

use std::collections::HashSet;

use rtnetlink::Handle;
use rtnetlink::packet_route::tc::TcHandle;

use super::bandwidth::{Shaping, Tbf};
use super::error::BridgeError;
use super::link::{self, Link};
use super::tc;

/// Whether `l` is an ifb berth-bridge made for the attachment `tag`
/// (untagged: an ADD that died between creating and tagging it).
fn owns_ifb(l: &Link, tag: &str) -> bool {
    l.is("ifb") && l.alias.as_deref().is_none_or(|a| a.is_empty() || a == tag)
}

/// Shapes the attachment whose host veth is `host`. Returns the ifb device
/// when egress is shaped.
pub async fn apply(
    h: &Handle,
    shaping: &Shaping,
    host: &Link,
    ifb_name: &str,
    tag: &str,
    mtu: u32,
) -> Result<Option<Link>, BridgeError> {
    if let Some(l) = shaping.ingress {
        tc::set_root_tbf(h, host.index, &Tbf::new(l)).await?;
    }
    let Some(l) = shaping.egress else {
        return Ok(None);
    };
    // A retried ADD: replace our own leftover; refuse anything else.
    if let Some(old) = link::get_link(h, ifb_name).await? {
        if !owns_ifb(&old, tag) {
            return Err(BridgeError::Conflict(format!(
                "link {ifb_name} exists and is not berth-bridge's ifb for {tag}"
            )));
        }
        link::delete_link(h, old.index).await?;
    }
    tc::create_ifb(h, ifb_name, mtu).await?;
    let ifb = link::get_link(h, ifb_name).await?.ok_or_else(|| {
        BridgeError::Shaping(format!("ifb device {ifb_name} vanished after creation"))
    })?;
    tc::set_alias(h, ifb.index, tag).await?;
    // Shape the ifb before traffic reaches it.
    tc::set_root_tbf(h, ifb.index, &Tbf::new(l)).await?;
    tc::redirect_ingress(h, host.index, ifb.index).await?;
    Ok(Some(ifb))
}

/// Deletes the attachment's ifb device, if there is one of ours.
pub async fn teardown(h: &Handle, ifb_name: &str, tag: &str) -> Result<(), BridgeError> {
    if let Some(l) = link::get_link(h, ifb_name).await? {
        if owns_ifb(&l, tag) {
            link::delete_link(h, l.index).await?;
        } else {
            tracing::warn!(link = %ifb_name, "not deleting a link that is not ours");
        }
    }
    Ok(())
}

/// The root TBF of link `index` is `want` (the kernel reports back what
/// it was given).
async fn expect_tbf(h: &Handle, index: u32, name: &str, want: Tbf) -> Result<(), BridgeError> {
    let root = u32::from(TcHandle::ROOT);
    let qdiscs = tc::qdiscs(h, index).await?;
    let have = qdiscs
        .iter()
        .find(|q| q.parent == root)
        .ok_or_else(|| BridgeError::Check(format!("{name} has no root qdisc")))?;
    let Some(tbf) = have.tbf.filter(|_| have.kind == "tbf") else {
        return Err(BridgeError::Check(format!(
            "{name}'s root qdisc is {}, not tbf",
            have.kind
        )));
    };
    if tbf != want {
        return Err(BridgeError::Check(format!(
            "{name}'s tbf is rate {} B/s, buffer {} ticks, limit {} B; want rate {} B/s, \
             buffer {} ticks, limit {} B",
            tbf.rate, tbf.buffer, tbf.limit, want.rate, want.buffer, want.limit
        )));
    }
    Ok(())
}

/// CHECK: the qdiscs, the redirect and the ifb are as ADD left them.
pub async fn check(
    h: &Handle,
    shaping: &Shaping,
    host: &Link,
    ifb_name: &str,
    tag: &str,
) -> Result<(), BridgeError> {
    if let Some(l) = shaping.ingress {
        expect_tbf(h, host.index, &host.name, Tbf::new(l)).await?;
    }
    if let Some(l) = shaping.egress {
        let ifb = link::get_link(h, ifb_name)
            .await?
            .filter(|i| i.is("ifb") && i.alias.as_deref() == Some(tag))
            .ok_or_else(|| {
                BridgeError::Check(format!("ifb device {ifb_name} of {tag} is missing"))
            })?;
        if !ifb.up {
            return Err(BridgeError::Check(format!("ifb device {ifb_name} is down")));
        }
        expect_tbf(h, ifb.index, ifb_name, Tbf::new(l)).await?;
        if !tc::redirects_to(h, host.index, ifb.index).await? {
            return Err(BridgeError::Check(format!(
                "{}'s ingress is not redirected to {ifb_name}",
                host.name
            )));
        }
    }
    Ok(())
}

/// GC: deletes the ifb devices of this network's attachments (alias
/// starting with `prefix`) whose tag is not in `keep`.
pub async fn gc(h: &Handle, prefix: &str, keep: &HashSet<String>) -> Result<usize, BridgeError> {
    let mut removed = 0;
    for l in tc::links_of_kind(h, "ifb").await? {
        let Some(alias) = l.alias.as_deref() else {
            continue;
        };
        if alias.starts_with(prefix) && !keep.contains(alias) {
            link::delete_link(h, l.index).await?;
            removed += 1;
        }
    }
    Ok(removed)
}
