//! Default resource limits (POSIX rlimits) for container processes.
//!
//! The CRI carries no rlimits: kubelet leaves them to the runtime. Without
//! any configured, berth does as containerd's CRI does and sets none, so a
//! container inherits the shim's limits. An operator can give every
//! container the same limits with `[runtime] default_rlimits`, written as
//! CRI-O's `default_ulimits` are: `"nofile=1024:4096"` (soft:hard) or
//! `"nproc=512"` (soft = hard), names as `ulimit`/prlimit know them.

use oci_spec::runtime::{PosixRlimit, PosixRlimitBuilder, PosixRlimitType};

/// The rlimit names accepted, with their OCI type.
const NAMES: &[(&str, PosixRlimitType)] = &[
    ("as", PosixRlimitType::RlimitAs),
    ("core", PosixRlimitType::RlimitCore),
    ("cpu", PosixRlimitType::RlimitCpu),
    ("data", PosixRlimitType::RlimitData),
    ("fsize", PosixRlimitType::RlimitFsize),
    ("locks", PosixRlimitType::RlimitLocks),
    ("memlock", PosixRlimitType::RlimitMemlock),
    ("msgqueue", PosixRlimitType::RlimitMsgqueue),
    ("nice", PosixRlimitType::RlimitNice),
    ("nofile", PosixRlimitType::RlimitNofile),
    ("nproc", PosixRlimitType::RlimitNproc),
    ("rss", PosixRlimitType::RlimitRss),
    ("rtprio", PosixRlimitType::RlimitRtprio),
    ("rttime", PosixRlimitType::RlimitRttime),
    ("sigpending", PosixRlimitType::RlimitSigpending),
    ("stack", PosixRlimitType::RlimitStack),
];

/// Parses `name=soft:hard` or `name=value`; `unlimited` or `-1` for no
/// limit. The error says what is wrong with `s`.
pub fn parse_rlimit(s: &str) -> Result<PosixRlimit, String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=SOFT:HARD or NAME=VALUE"))?;
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("rlimit_").unwrap_or(&name);
    let typ = NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            format!(
                "{s:?}: unknown limit {name:?} (one of {})",
                NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            )
        })?;
    let (soft, hard) = match value.split_once(':') {
        Some((soft, hard)) => (number(s, soft)?, number(s, hard)?),
        None => {
            let v = number(s, value)?;
            (v, v)
        }
    };
    if soft > hard {
        return Err(format!("{s:?}: soft limit above the hard limit"));
    }
    PosixRlimitBuilder::default()
        .typ(typ)
        .soft(soft)
        .hard(hard)
        .build()
        .map_err(|e| format!("{s:?}: {e}"))
}

/// Parses every entry; the first error wins.
pub fn parse_rlimits(list: &[String]) -> Result<Vec<PosixRlimit>, String> {
    let rlimits: Vec<PosixRlimit> = list
        .iter()
        .map(|s| parse_rlimit(s))
        .collect::<Result<_, _>>()?;
    for (i, r) in rlimits.iter().enumerate() {
        if rlimits[..i].iter().any(|o| o.typ() == r.typ()) {
            return Err(format!("{:?} is given twice", list[i]));
        }
    }
    Ok(rlimits)
}

fn number(whole: &str, v: &str) -> Result<u64, String> {
    match v.trim() {
        "unlimited" | "-1" => Ok(u64::MAX),
        n => n
            .parse()
            .map_err(|_| format!("{whole:?}: {n:?} is not a number or \"unlimited\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_and_hard_limits_parse() {
        let r = parse_rlimit("nofile=1024:4096").unwrap();
        assert_eq!(
            (r.typ(), r.soft(), r.hard()),
            (PosixRlimitType::RlimitNofile, 1024, 4096)
        );
        let r = parse_rlimit("NPROC=512").unwrap();
        assert_eq!(
            (r.typ(), r.soft(), r.hard()),
            (PosixRlimitType::RlimitNproc, 512, 512)
        );
        let r = parse_rlimit("RLIMIT_CORE=0:unlimited").unwrap();
        assert_eq!(
            (r.typ(), r.soft(), r.hard()),
            (PosixRlimitType::RlimitCore, 0, u64::MAX)
        );
        assert_eq!(parse_rlimit("memlock=-1").unwrap().soft(), u64::MAX);
    }

    #[test]
    fn bad_limits_say_what_is_wrong() {
        for (bad, why) in [
            ("nofile", "expected NAME"),
            ("files=10", "unknown limit"),
            ("nofile=ten", "not a number"),
            ("nofile=10:x", "not a number"),
            ("nofile=20:10", "soft limit above"),
        ] {
            let e = parse_rlimit(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let e = parse_rlimits(&["nofile=1".into(), "NOFILE=2".into()]).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        assert!(parse_rlimits(&[]).unwrap().is_empty());
    }
}
