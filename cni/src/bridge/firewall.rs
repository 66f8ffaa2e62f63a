//! berth-bridge's nftables rules: which rules a network and an attachment
//! need, and the batches that bring the table there.
//!
//! ```text
//! table inet berth-bridge {
//!   chain prerouting  { type nat hook prerouting priority dstnat; fib daddr type local jump hostports }
//!   chain output      { type nat hook output priority dstnat;     fib daddr type local jump hostports }
//!   chain hostports   { per attachment and port mapping:
//!                       meta nfproto ipv4 [ip daddr <hostIP>] meta l4proto tcp th dport 8080 dnat ip to 10.89.0.5:80 }
//!   chain postrouting { type nat hook postrouting priority srcnat;
//!                       per network (ipMasq): ip saddr 10.89.0.0/16 ip daddr != 10.89.0.0/16
//!                                             ip daddr != 224.0.0.0/4 masquerade
//!                       per attachment with port mappings (hairpin, pod or host loopback to a mapped port):
//!                       ct status dnat ip daddr 10.89.0.5 ip saddr {10.89.0.0/16 | 127.0.0.0/8} masquerade }
//!   chain localnet-guard { type filter hook prerouting priority raw;
//!                       per network: iifname "berth0" ip daddr 127.0.0.0/8 drop }
//! }
//! ```
//!
//! Connections to `127.0.0.1:<hostPort>` from the host need
//! `net.ipv4.conf.<bridge>.route_localnet=1` (set on ADD with port mappings)
//! and the masquerade above; the guard chain drops what route_localnet would
//! otherwise let pods send to the host's loopback (CVE-2020-8558).
//!
//! Every rule carries a tag as its comment: `berth:<network>:<cid>/<ifname>`
//! for an attachment's rules (DEL and GC delete exactly those), `berth:<network>
//! <what>` for a network's, `berth hostports` for the jumps. Network rules are
//! changed under the network's IPAM lock; the jump chains hold nothing else
//! and are rewritten whole (flush + add in one batch) when not exactly right,
//! which is race-free between networks sharing the table.

use std::collections::HashSet;
use std::net::IpAddr;

use rscni_types::ipnet::IpNet;

use super::config::{BridgeConfig, network_rule_prefix};
use super::error::BridgeError;
use super::nft::{
    self, ChainSpec, CmpOp, Expr, Hook, ListedRule, Nft, Op, Rule, addr, ct_status_dnat, daddr_is,
    fib_daddr_local, ifname, l4proto, nfproto, th_dport,
};

const PREROUTING: &str = "prerouting";
const OUTPUT: &str = "output";
const POSTROUTING: &str = "postrouting";
const HOSTPORTS: &str = "hostports";
const GUARD: &str = "localnet-guard";
const JUMP_TAG: &str = "berth hostports";

/// The chains of the table.
pub fn chains() -> [ChainSpec; 5] {
    [
        ChainSpec {
            name: PREROUTING,
            base: Some(("nat", Hook::Prerouting, -100)),
        },
        ChainSpec {
            name: OUTPUT,
            base: Some(("nat", Hook::Output, -100)),
        },
        ChainSpec {
            name: POSTROUTING,
            base: Some(("nat", Hook::Postrouting, 100)),
        },
        ChainSpec {
            name: HOSTPORTS,
            base: None,
        },
        ChainSpec {
            name: GUARD,
            base: Some(("filter", Hook::Prerouting, -300)),
        },
    ]
}

fn rule(chain: &'static str, parts: &[Vec<Expr>], tail: &[Expr], tag: &str) -> Rule {
    let mut exprs: Vec<Expr> = parts.concat();
    exprs.extend_from_slice(tail);
    Rule {
        chain,
        exprs,
        tag: tag.to_string(),
    }
}

/// Table, chains and jumps, fixing the jump chains if they are not exactly
/// one tagged jump each.
pub fn base_ops(listed: &[ListedRule]) -> Vec<Op> {
    let mut ops = vec![Op::AddTable];
    ops.extend(chains().into_iter().map(Op::AddChain));
    for chain in [PREROUTING, OUTPUT] {
        let in_chain: Vec<&ListedRule> = listed.iter().filter(|r| r.chain == chain).collect();
        let ok = in_chain.len() == 1 && in_chain[0].tag.as_deref() == Some(JUMP_TAG);
        if !ok {
            ops.push(Op::FlushChain(chain));
            ops.push(Op::AddRule(rule(
                chain,
                &[fib_daddr_local()],
                &[Expr::Counter, Expr::Jump(HOSTPORTS.into())],
                JUMP_TAG,
            )));
        }
    }
    ops
}

/// The rules a network needs (independent of the attachment).
pub fn network_rules(cfg: &BridgeConfig) -> Vec<Rule> {
    let prefix = network_rule_prefix(&cfg.network);
    let mut rules = Vec::new();
    if cfg.ip_masq {
        for pool in cfg.pools() {
            rules.push(rule(
                POSTROUTING,
                &[
                    nfproto(pool.is_v6()),
                    addr(false, CmpOp::Eq, pool.subnet),
                    addr(true, CmpOp::Neq, pool.subnet),
                    addr(true, CmpOp::Neq, multicast_net(pool.is_v6())),
                ],
                &[Expr::Counter, Expr::Masquerade],
                &format!("{prefix}masq {}", pool.subnet),
            ));
        }
    }
    if cfg.v4.is_some() {
        rules.push(rule(
            GUARD,
            &[
                ifname(true, &cfg.bridge),
                nfproto(false),
                addr(true, CmpOp::Eq, loopback_net()),
            ],
            &[Expr::Counter, Expr::Drop],
            &format!("{prefix}localnet-guard {}", cfg.bridge),
        ));
    }
    rules
}

fn multicast_net(v6: bool) -> IpNet {
    // Valid constant networks.
    if v6 {
        "ff00::/8".parse().unwrap_or_default()
    } else {
        "224.0.0.0/4".parse().unwrap_or_default()
    }
}

fn loopback_net() -> IpNet {
    // 127.0.0.0/8 is a valid constant network.
    "127.0.0.0/8".parse().unwrap_or_default()
}

/// Brings the network's rules to `network_rules`, touching nothing when
/// they already are.
pub fn network_ops(cfg: &BridgeConfig, listed: &[ListedRule]) -> Vec<Op> {
    let prefix = network_rule_prefix(&cfg.network);
    let desired = network_rules(cfg);
    let existing: Vec<&ListedRule> = listed
        .iter()
        .filter(|r| r.tag.as_deref().is_some_and(|t| t.starts_with(&prefix)))
        .collect();
    let mut have: Vec<(String, String)> = existing
        .iter()
        .map(|r| (r.chain.clone(), r.tag.clone().unwrap_or_default()))
        .collect();
    let mut want: Vec<(String, String)> = desired
        .iter()
        .map(|r| (r.chain.to_string(), r.tag.clone()))
        .collect();
    have.sort();
    want.sort();
    if have == want {
        return Vec::new();
    }
    let mut ops: Vec<Op> = existing
        .iter()
        .map(|r| Op::DelRule {
            chain: r.chain.clone(),
            handle: r.handle,
        })
        .collect();
    ops.extend(desired.into_iter().map(Op::AddRule));
    ops
}

/// The rules of one attachment: DNAT for each port mapping and address
/// family, and the masquerade that hairpin and loopback connections need.
pub fn attachment_rules(cfg: &BridgeConfig, tag: &str, ips: &[IpAddr]) -> Vec<Rule> {
    let mut rules = Vec::new();
    if cfg.port_mappings.is_empty() {
        return rules;
    }
    for pm in &cfg.port_mappings {
        for ip in ips {
            if pm.host_ip.is_some_and(|h| h.is_ipv6() != ip.is_ipv6()) {
                continue;
            }
            let mut parts = vec![nfproto(ip.is_ipv6())];
            if let Some(h) = pm.host_ip {
                parts.push(daddr_is(h));
            }
            parts.push(l4proto(pm.protocol.number()));
            parts.push(th_dport(pm.host_port));
            rules.push(rule(
                HOSTPORTS,
                &parts,
                &[Expr::Counter, Expr::Dnat(*ip, pm.container_port)],
                tag,
            ));
        }
    }
    for ip in ips {
        let Some(pool) = cfg.pool_of(*ip) else {
            continue;
        };
        let mut sources = vec![pool.subnet];
        if ip.is_ipv4() {
            sources.push(loopback_net());
        }
        for src in sources {
            rules.push(rule(
                POSTROUTING,
                &[
                    nfproto(ip.is_ipv6()),
                    ct_status_dnat(),
                    daddr_is(*ip),
                    addr(false, CmpOp::Eq, src),
                ],
                &[Expr::Counter, Expr::Masquerade],
                tag,
            ));
        }
    }
    rules
}

/// Deletes every listed rule `doomed` selects.
fn delete_ops(listed: &[ListedRule], doomed: impl Fn(&str) -> bool) -> Vec<Op> {
    listed
        .iter()
        .filter(|r| r.tag.as_deref().is_some_and(&doomed))
        .map(|r| Op::DelRule {
            chain: r.chain.clone(),
            handle: r.handle,
        })
        .collect()
}

fn batch_error(e: &nft::BatchError, table: &str) -> BridgeError {
    BridgeError::Nft(format!("table inet {table}: {e}"))
}

/// Lists and applies, retrying when a listed rule vanished in between
/// (a concurrent DEL or GC).
fn list_and_apply(
    nft: &mut Nft,
    table: &str,
    plan: impl Fn(&[ListedRule]) -> Vec<Op>,
) -> Result<(), BridgeError> {
    const ENOENT: i32 = 2;
    let mut attempt = 0;
    loop {
        let listed = nft.list_rules()?;
        let ops = plan(&listed);
        match nft.apply(&ops) {
            Ok(()) => return Ok(()),
            Err(e) if e.errno == ENOENT && attempt < 3 => attempt += 1,
            Err(e) => return Err(batch_error(&e, table)),
        }
    }
}

/// ADD: table, chains, the network's rules and this attachment's rules (any
/// previous ones of the same attachment replaced), in one atomic batch.
/// Call with the network's IPAM lock held.
pub fn setup(cfg: &BridgeConfig, tag: &str, ips: &[IpAddr]) -> Result<(), BridgeError> {
    let mut nft = Nft::open(&cfg.nft_table)?;
    let rules = attachment_rules(cfg, tag, ips);
    list_and_apply(&mut nft, &cfg.nft_table, |listed| {
        let mut ops = base_ops(listed);
        ops.extend(network_ops(cfg, listed));
        ops.extend(delete_ops(listed, |t| t == tag));
        ops.extend(rules.iter().cloned().map(Op::AddRule));
        ops
    })
}

/// DEL: removes this attachment's rules. A missing table is fine.
pub fn teardown(cfg: &BridgeConfig, tag: &str) -> Result<(), BridgeError> {
    let mut nft = Nft::open(&cfg.nft_table)?;
    list_and_apply(&mut nft, &cfg.nft_table, |listed| {
        delete_ops(listed, |t| t == tag)
    })
}

/// GC: removes the rules of this network's attachments not in `keep`.
pub fn gc(cfg: &BridgeConfig, keep: &HashSet<String>) -> Result<(), BridgeError> {
    let prefix = super::config::attachment_tag_prefix(&cfg.network);
    let mut nft = Nft::open(&cfg.nft_table)?;
    list_and_apply(&mut nft, &cfg.nft_table, |listed| {
        delete_ops(listed, |t| t.starts_with(&prefix) && !keep.contains(t))
    })
}

/// CHECK: the network's rules and this attachment's are all there.
pub fn check(cfg: &BridgeConfig, tag: &str, ips: &[IpAddr]) -> Result<(), BridgeError> {
    let mut nft = Nft::open(&cfg.nft_table)?;
    let listed = nft.list_rules()?;
    let missing_network = network_ops(cfg, &listed);
    if !missing_network.is_empty() {
        return Err(BridgeError::Check(format!(
            "the network's nftables rules in table inet {} are missing or changed",
            cfg.nft_table
        )));
    }
    let want = attachment_rules(cfg, tag, ips).len();
    let have = listed
        .iter()
        .filter(|r| r.tag.as_deref() == Some(tag))
        .count();
    if want != have {
        return Err(BridgeError::Check(format!(
            "expected {want} nftables rules tagged {tag:?} in table inet {}, found {have}",
            cfg.nft_table
        )));
    }
    Ok(())
}

/// STATUS: nf_tables answers.
pub fn probe(cfg: &BridgeConfig) -> Result<(), BridgeError> {
    Nft::open(&cfg.nft_table)?.probe()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rscni_types::types::NetConf;

    fn cfg(extra: &str) -> BridgeConfig {
        let json = format!(
            r#"{{"cniVersion":"1.1.0","name":"n","type":"berth-bridge","bridge":"br1",
                "subnets":["10.9.0.0/16","fd00:9::/64"]{extra}}}"#
        );
        let conf: NetConf = serde_json::from_str(&json).expect("json");
        BridgeConfig::from_netconf(&conf).expect("config")
    }

    #[test]
    fn base_is_rewritten_only_when_wrong() {
        let ops = base_ops(&[]);
        assert_eq!(ops.len(), 1 + 5 + 4);
        let good = vec![
            ListedRule {
                chain: PREROUTING.into(),
                handle: 1,
                tag: Some(JUMP_TAG.into()),
            },
            ListedRule {
                chain: OUTPUT.into(),
                handle: 2,
                tag: Some(JUMP_TAG.into()),
            },
        ];
        assert_eq!(base_ops(&good).len(), 6);
        let mut dup = good.clone();
        dup.push(ListedRule {
            chain: OUTPUT.into(),
            handle: 3,
            tag: Some(JUMP_TAG.into()),
        });
        assert_eq!(base_ops(&dup).len(), 8);
    }

    #[test]
    fn network_rules_are_replaced_only_when_they_differ() {
        let c = cfg(r#","ipMasq":true"#);
        let rules = network_rules(&c);
        // masq v4 + masq v6 + guard
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].tag, "berth:n masq 10.9.0.0/16");
        let listed: Vec<ListedRule> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| ListedRule {
                chain: r.chain.into(),
                handle: i as u64,
                tag: Some(r.tag.clone()),
            })
            .collect();
        assert!(network_ops(&c, &listed).is_empty());
        // Masquerade turned off: the masq rules go, the guard is re-added.
        let off = cfg("");
        let ops = network_ops(&off, &listed);
        assert_eq!(
            ops.iter()
                .filter(|o| matches!(o, Op::DelRule { .. }))
                .count(),
            3
        );
        assert_eq!(
            ops.iter().filter(|o| matches!(o, Op::AddRule(_))).count(),
            1
        );
    }

    #[test]
    fn attachment_rules_follow_families_and_host_ips() {
        let c = cfg(r#","runtimeConfig":{"portMappings":[
                {"hostPort":8080,"containerPort":80},
                {"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"192.0.2.1"}]}"#);
        let ips: Vec<IpAddr> = vec![
            "10.9.0.5".parse().expect("ip"),
            "fd00:9::5".parse().expect("ip"),
        ];
        let rules = attachment_rules(&c, "t", &ips);
        let dnat = rules.iter().filter(|r| r.chain == HOSTPORTS).count();
        // tcp on both families, udp only on IPv4 (its hostIP is IPv4)
        assert_eq!(dnat, 3);
        // masquerade: v4 from subnet and loopback, v6 from subnet
        assert_eq!(rules.iter().filter(|r| r.chain == POSTROUTING).count(), 3);
        assert!(rules.iter().all(|r| r.tag == "t"));
        assert!(attachment_rules(&cfg(""), "t", &ips).is_empty());
    }
}
