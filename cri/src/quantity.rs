//! Kubernetes resource quantities (`resource.Quantity`), as the pod
//! bandwidth annotations carry them: a decimal number (`1`, `1.5`, `.5`)
//! and one suffix, binary SI (`Ki Mi Gi Ti Pi Ei`), decimal SI
//! (`n u m k M G T P E`) or a decimal exponent (`e6`, `E-3`). Anything else
//! (two suffixes such as `2.5e3k`, a sign where none belongs, spaces,
//! units Kubernetes does not know such as `10X`) does not parse, as
//! Kubernetes' own parser refuses it.

/// The value of `s`, rounded up to an integer (as `Quantity.Value()`).
pub fn parse(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a Kubernetes quantity (e.g. 1.5M, 100Mi, 1e6)");
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number = number.strip_prefix('+').unwrap_or(number);
    if number.starts_with('-') {
        return Err(format!("{s:?} is negative"));
    }
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    // The number as digits × 10^-scale, then the suffix's factor
    // 2^bits × 10^exp.
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Err(format!("{s:?} is too large"));
    }
    let mantissa: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| bad())?
    };
    let (bits, mut exp): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        s if s.starts_with(['e', 'E']) => {
            let e = &s[1..];
            let e = e.strip_prefix('+').unwrap_or(e);
            let ok = !e.is_empty()
                && e.strip_prefix('-')
                    .unwrap_or(e)
                    .bytes()
                    .all(|b| b.is_ascii_digit());
            if !ok {
                return Err(bad());
            }
            (0, e.parse().map_err(|_| bad())?)
        }
        _ => return Err(bad()),
    };
    exp -= i32::try_from(frac.len()).map_err(|_| bad())?;
    let too_large = || format!("{s:?} is too large");
    let mut v = mantissa
        .checked_mul(1u128.checked_shl(bits).ok_or_else(too_large)?)
        .ok_or_else(too_large)?;
    if exp >= 0 {
        let f = 10u128
            .checked_pow(u32::try_from(exp).map_err(|_| too_large())?)
            .ok_or_else(too_large)?;
        v = v.checked_mul(f).ok_or_else(too_large)?;
    } else {
        // Rounded up, as Kubernetes rounds a quantity's integer value.
        let d = u32::try_from(-exp).map_err(|_| bad())?;
        v = match 10u128.checked_pow(d) {
            Some(f) => v.div_ceil(f),
            None => u128::from(v != 0),
        };
    }
    u64::try_from(v).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kubernetes_form_parses() {
        for (q, want) in [
            ("10M", 10_000_000),
            ("1.5M", 1_500_000),
            ("100Mi", 100 << 20),
            ("1G", 1_000_000_000),
            ("500k", 500_000),
            ("1e6", 1_000_000),
            ("1E6", 1_000_000),
            ("2.5e3", 2_500),
            ("1.5e-1", 1),
            (".5k", 500),
            ("1Gi", 1 << 30),
            ("7", 7),
            ("+7", 7),
            ("1500m", 2),
            ("0", 0),
            ("1Ei", 1 << 60),
        ] {
            assert_eq!(parse(q), Ok(want), "{q}");
        }
    }

    #[test]
    fn what_kubernetes_refuses_is_refused() {
        for q in [
            "", "10X", "2.5e3k", "1.5.5M", "M", ".", "1 M", "-1M", "1e", "1e+", "k1", "1Mi5",
            "0x10", "1..5",
        ] {
            assert!(parse(q).is_err(), "{q:?} parsed");
        }
        assert!(parse("100000000000000000000000E").is_err());
        assert!(parse("1e100").is_err());
    }
}
