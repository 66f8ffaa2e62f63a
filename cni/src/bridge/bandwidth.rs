//! The `bandwidth` capability (`runtimeConfig.bandwidth`, see the CNI
//! conventions) and the token bucket filter parameters it turns into, as
//! the reference `bandwidth` plugin computes them.
//!
//! Rates are bits per second and bursts bits, as in the capability. Each
//! direction is shaped when both its rate and burst are set; one without
//! the other is refused, as the reference plugin refuses it.

use serde::Deserialize;
use serde_json::Value;

use super::error::BridgeError;

/// The queue latency the reference plugin sizes a TBF's limit for.
pub const LATENCY_US: u64 = 25_000;
/// The highest rate accepted: 1 Pbit/s, the most kubelet allows in a
/// bandwidth annotation, and far beyond any link.
pub const MAX_RATE: u64 = 1_000_000_000_000_000;
/// The lowest rate accepted: TBF counts bytes, so 8 bits/s is one byte.
pub const MIN_RATE: u64 = 8;
/// A burst must stay under 4 GB (the reference plugin's bound: the kernel
/// takes it as a 32-bit byte count).
pub const MAX_BURST_BYTES: u64 = u32::MAX as u64;
/// The Ethernet header the qdiscs count in a packet's length.
pub const ETH_HLEN: u64 = 14;
/// Scheduler ticks per microsecond. The kernel's packet scheduler clock
/// has counted 64 ns ticks since Linux 3.x (`PSCHED_SHIFT` 6;
/// `/proc/net/psched` reads `000003e8 00000040 000f4240 ...`, the
/// 1000/64 that tc and the netlink library derive this from).
pub const TICKS_PER_US_NUM: u64 = 1000;
/// The denominator of [`TICKS_PER_US_NUM`].
pub const TICKS_PER_US_DEN: u64 = 64;

/// One direction's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Bits per second.
    pub rate: u64,
    /// Bits.
    pub burst: u64,
}

/// The shaping of one attachment: traffic to the pod (`ingress`) and from
/// it (`egress`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shaping {
    pub ingress: Option<Limit>,
    pub egress: Option<Limit>,
}

impl Shaping {
    /// Whether nothing is shaped.
    pub fn is_empty(&self) -> bool {
        self.ingress.is_none() && self.egress.is_none()
    }
}

/// The capability as written in JSON (unknown keys are ignored, as the
/// reference plugin ignores them).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    ingress_rate: Option<u64>,
    #[serde(default)]
    ingress_burst: Option<u64>,
    #[serde(default)]
    egress_rate: Option<u64>,
    #[serde(default)]
    egress_burst: Option<u64>,
    #[serde(default)]
    unshaped_subnets: Option<Vec<Value>>,
    #[serde(default)]
    shaped_subnets: Option<Vec<Value>>,
}

/// Parses `runtimeConfig.bandwidth`. `mtu` is the attachment's MTU: a
/// burst smaller than one full-size packet would never let one through.
pub fn parse(value: &Value, mtu: u32) -> Result<Shaping, BridgeError> {
    let bad = |m: String| BridgeError::Config(format!("runtimeConfig.bandwidth: {m}"));
    if value.is_null() {
        return Ok(Shaping::default());
    }
    if !value.is_object() {
        return Err(bad(format!("must be an object, not {value}")));
    }
    let raw: Raw = serde_json::from_value(value.clone()).map_err(|e| {
        bad(format!(
            "{e} (rates are bits per second and bursts bits, as non-negative integers)"
        ))
    })?;
    for (key, list) in [
        ("unshapedSubnets", &raw.unshaped_subnets),
        ("shapedSubnets", &raw.shaped_subnets),
    ] {
        if list.as_ref().is_some_and(|l| !l.is_empty()) {
            return Err(bad(format!(
                "{key} is not supported by berth-bridge (all of the pod's traffic is shaped)"
            )));
        }
    }
    let ingress = limit("ingress", raw.ingress_rate, raw.ingress_burst, mtu).map_err(bad)?;
    let egress = limit("egress", raw.egress_rate, raw.egress_burst, mtu).map_err(bad)?;
    Ok(Shaping { ingress, egress })
}

fn limit(
    dir: &str,
    rate: Option<u64>,
    burst: Option<u64>,
    mtu: u32,
) -> Result<Option<Limit>, String> {
    let (rate, burst) = (rate.unwrap_or(0), burst.unwrap_or(0));
    match (rate, burst) {
        (0, 0) => return Ok(None),
        (_, 0) => return Err(format!("{dir}Rate is set, so {dir}Burst must be too")),
        (0, _) => return Err(format!("{dir}Burst is set, so {dir}Rate must be too")),
        _ => {}
    }
    if rate < MIN_RATE {
        return Err(format!(
            "{dir}Rate {rate} bits/s is below the minimum of {MIN_RATE} bits/s"
        ));
    }
    if rate > MAX_RATE {
        return Err(format!(
            "{dir}Rate {rate} bits/s is above the maximum of {MAX_RATE} bits/s (1 Pbit/s)"
        ));
    }
    if burst / 8 >= MAX_BURST_BYTES {
        return Err(format!(
            "{dir}Burst {burst} bits is 4 GB or more; it must be less"
        ));
    }
    // The bucket as the kernel will hold it (whole 64 ns ticks) must take
    // one full-size frame, else no such packet ever passes.
    let limit = Limit { rate, burst };
    let bucket = Tbf::new(limit).bucket_bytes();
    let frame = u64::from(mtu) + ETH_HLEN;
    if bucket < frame {
        return Err(format!(
            "{dir}Burst {burst} bits at {rate} bits/s makes a bucket of {bucket} bytes, less \
             than one full-size frame (MTU {mtu} + {ETH_HLEN} bytes of Ethernet header): no \
             such packet could pass; the burst must be at least {} bits, and more at high \
             rates (the kernel counts the bucket in whole 64 ns ticks)",
            frame * 8
        ));
    }
    Ok(Some(limit))
}

/// A TBF qdisc's parameters (`tc qdisc add ... tbf rate R burst B latency
/// 25ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tbf {
    /// Bytes per second.
    pub rate: u64,
    /// The bucket: how long a full bucket lasts at `rate`, in scheduler
    /// ticks (64 ns).
    pub buffer: u32,
    /// Bytes that may wait in the queue.
    pub limit: u32,
}

impl Tbf {
    /// The reference plugin's arithmetic: rate and burst in bytes; buffer
    /// = burst / rate in µs, in ticks; limit = rate × latency + burst.
    /// Where its 32-bit conversions would wrap, these saturate.
    pub fn new(l: Limit) -> Self {
        let rate = (l.rate / 8).max(1);
        let burst = (l.burst / 8).min(MAX_BURST_BYTES);
        let buffer_us = u128::from(burst) * 1_000_000 / u128::from(rate);
        let buffer_us = buffer_us.min(u128::from(u32::MAX));
        let ticks = buffer_us * u128::from(TICKS_PER_US_NUM) / u128::from(TICKS_PER_US_DEN);
        let queued = u128::from(rate) * u128::from(LATENCY_US) / 1_000_000;
        let limit = (queued + u128::from(burst)).min(u128::from(u32::MAX));
        Self {
            rate,
            buffer: u32::try_from(ticks).unwrap_or(u32::MAX),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        }
    }

    /// The bucket in bytes as the kernel derives it from [`Tbf::buffer`]
    /// (it refuses a TBF whose bucket is empty).
    pub fn bucket_bytes(&self) -> u64 {
        let ns = u128::from(self.buffer) * 64;
        u64::try_from(ns * u128::from(self.rate) / 1_000_000_000).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_both_directions_and_nothing() {
        let s = parse(
            &json!({"ingressRate": 1_000_000, "ingressBurst": 80_000,
                    "egressRate": 2_000_000, "egressBurst": u32::MAX}),
            1500,
        )
        .unwrap();
        assert_eq!(
            s.ingress,
            Some(Limit {
                rate: 1_000_000,
                burst: 80_000
            })
        );
        assert_eq!(s.egress.unwrap().burst, u64::from(u32::MAX));
        assert!(parse(&json!({}), 1500).unwrap().is_empty());
        assert!(parse(&Value::Null, 1500).unwrap().is_empty());
        let zero = json!({"ingressRate": 0, "ingressBurst": 0});
        assert!(parse(&zero, 1500).unwrap().is_empty());
        let only_egress =
            parse(&json!({"egressRate": 64_000, "egressBurst": 16_000}), 1500).unwrap();
        assert!(only_egress.ingress.is_none() && only_egress.egress.is_some());
    }

    #[test]
    fn refuses_bad_limits() {
        for (v, want) in [
            (json!({"ingressRate": 1000}), "ingressBurst must be too"),
            (json!({"egressBurst": 1000}), "egressRate must be too"),
            (
                json!({"ingressRate": -5, "ingressBurst": 1}),
                "non-negative",
            ),
            (
                json!({"ingressRate": "10M", "ingressBurst": 1}),
                "non-negative",
            ),
            (
                json!({"ingressRate": 1.5, "ingressBurst": 1}),
                "non-negative",
            ),
            (
                json!({"ingressRate": 7, "ingressBurst": 100_000}),
                "below the minimum",
            ),
            (
                json!({"egressRate": 2_000_000_000_000_000u64, "egressBurst": 100_000}),
                "above the maximum",
            ),
            (
                json!({"egressRate": 1_000_000, "egressBurst": 8 * u64::from(u32::MAX)}),
                "4 GB",
            ),
            (
                json!({"ingressRate": 1_000_000, "ingressBurst": 8_000}),
                "less than one full-size frame (MTU 1500 + 14",
            ),
            (
                json!({"ingressRate": 1_000_000, "ingressBurst": 80_000,
                       "unshapedSubnets": ["10.0.0.0/8"]}),
                "unshapedSubnets is not supported",
            ),
            (json!([1, 2]), "must be an object"),
        ] {
            let e = parse(&v, 1500).unwrap_err();
            assert!(matches!(e, BridgeError::Config(_)), "{v}: {e:?}");
            let msg = e.to_string();
            assert!(msg.contains(want), "{v}: {msg}");
            assert!(msg.starts_with("runtimeConfig.bandwidth: "), "{msg}");
        }
        // An empty subnet list is no exclusion at all.
        let ok = json!({"ingressRate": 1_000_000, "ingressBurst": 80_000, "shapedSubnets": []});
        assert!(parse(&ok, 1500).is_ok());
        // A bucket that rounds to less than a packet at a very high rate.
        let e = parse(
            &json!({"egressRate": MAX_RATE, "egressBurst": 12_000}),
            1500,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bucket of 0 bytes"), "{e}");
        // The MTU bound follows the MTU.
        let small = json!({"ingressRate": 1_000_000, "ingressBurst": 8_200});
        assert!(parse(&small, 1000).is_ok());
        assert!(parse(&small, 1500).is_err());
    }

    #[test]
    fn tbf_matches_the_reference_plugin() {
        // 1 Mbit/s, 80 kbit burst: 125000 B/s, 10000 B bucket = 80 ms
        // = 80000 µs × 15.625 ticks; limit = 125000 × 0.025 + 10000.
        let t = Tbf::new(Limit {
            rate: 1_000_000,
            burst: 80_000,
        });
        assert_eq!(t.rate, 125_000);
        assert_eq!(t.buffer, 1_250_000);
        assert_eq!(t.limit, 3125 + 10_000);
        assert_eq!(t.bucket_bytes(), 10_000);

        // Kubernetes annotations (containerd: burst = 2^32-1 bits): the
        // bucket time saturates at 2^32-1 ticks (~275 s at the rate; the
        // reference plugin's conversion wraps instead, to a value that
        // depends on the rate: kubernetes/kubernetes#90838).
        let k = Tbf::new(Limit {
            rate: 10_000_000,
            burst: u64::from(u32::MAX),
        });
        assert_eq!(k.rate, 1_250_000);
        // 536870911 B / 1250000 B/s = 429.496728 s = 429496728 µs.
        assert_eq!(k.buffer, u32::MAX);
        assert_eq!(k.limit, 31_250 + 536_870_911);
        assert_eq!(k.bucket_bytes(), 343_597_383); // 274.877906880 s × 1.25 MB/s

        // Rates past 32 bits of bytes/s, and fractions of a byte dropped.
        let fast = Tbf::new(Limit {
            rate: 40_000_000_007,
            burst: 8_000_000,
        });
        assert_eq!(fast.rate, 5_000_000_000);
        assert_eq!(fast.buffer, 3125); // 200 µs
        assert_eq!(fast.limit, 125_000_000 + 1_000_000);

        // The limit saturates instead of wrapping.
        let huge = Tbf::new(Limit {
            rate: MAX_RATE,
            burst: 8 * (MAX_BURST_BYTES - 1),
        });
        assert_eq!(huge.limit, u32::MAX);
        assert!(huge.buffer > 0);
    }
}
