//! The pod's hostname, /etc/hosts and /etc/resolv.conf, written once per
//! pod and bind-mounted into its containers.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::spec::Dns;

/// Checks DNS config as the resolver will read it.
pub fn validate_dns(dns: &Dns) -> Result<(), String> {
    for s in &dns.servers {
        s.parse::<IpAddr>()
            .map_err(|_| format!("dns server {s:?} is not an IP address"))?;
    }
    if dns.searches.len() > 32 {
        return Err("more than 32 dns search domains".into());
    }
    for d in &dns.searches {
        if d.is_empty() || d.len() > 253 || d.contains(char::is_whitespace) {
            return Err(format!("dns search domain {d:?} is not valid"));
        }
    }
    for o in &dns.options {
        if o.is_empty() || o.contains(char::is_whitespace) {
            return Err(format!(
                "dns option {o:?} is not valid (one word, e.g. ndots:5)"
            ));
        }
        let (name, value) = o.split_once(':').unwrap_or((o, ""));
        let known = [
            "ndots",
            "timeout",
            "attempts",
            "rotate",
            "edns0",
            "single-request",
            "single-request-reopen",
            "no-tld-query",
            "use-vc",
            "no-reload",
            "trust-ad",
            "debug",
            "inet6",
            "no-aaaa",
        ];
        if !known.contains(&name) {
            return Err(format!("dns option {name:?} is not a resolv.conf option"));
        }
        if !value.is_empty() && value.parse::<u32>().is_err() {
            return Err(format!("dns option {o:?} needs a number"));
        }
    }
    Ok(())
}

/// resolv.conf from the pod's DNS config; `host` is the node's file, used
/// when the pod has none (as kubelet's "Default" DNS policy expects).
pub fn resolv_conf(dns: Option<&Dns>, host: &str) -> String {
    let Some(d) =
        dns.filter(|d| !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()))
    else {
        return host.to_owned();
    };
    let mut out = String::new();
    if !d.searches.is_empty() {
        let _ = writeln!(out, "search {}", d.searches.join(" "));
    }
    for s in &d.servers {
        let _ = writeln!(out, "nameserver {s}");
    }
    if !d.options.is_empty() {
        let _ = writeln!(out, "options {}", d.options.join(" "));
    }
    out
}

/// /etc/hosts with the pod's own name on its IPs.
pub fn hosts(hostname: &str, ips: &[IpAddr]) -> String {
    let mut out = String::from(
        "# Managed by berth.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    for ip in ips {
        let _ = writeln!(out, "{ip}\t{hostname}");
    }
    out
}

/// A hostname as the kernel accepts it: 1-64 bytes of [a-z0-9.-].
pub fn validate_hostname(h: &str) -> Result<(), String> {
    if h.is_empty() || h.len() > 64 {
        return Err(format!("hostname {h:?} must be 1 to 64 characters"));
    }
    if !h
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(format!(
            "hostname {h:?} may contain only letters, digits, '-' and '.'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(servers: &[&str], searches: &[&str], options: &[&str]) -> Dns {
        Dns {
            servers: servers.iter().map(|s| s.to_string()).collect(),
            searches: searches.iter().map(|s| s.to_string()).collect(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn resolv_conf_from_dns_config_or_host() {
        let d = dns(
            &["10.96.0.10"],
            &["ns.svc.cluster.local", "svc.cluster.local"],
            &["ndots:5"],
        );
        assert_eq!(
            resolv_conf(Some(&d), "host"),
            "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        assert_eq!(
            resolv_conf(None, "nameserver 1.1.1.1\n"),
            "nameserver 1.1.1.1\n"
        );
        assert_eq!(resolv_conf(Some(&dns(&[], &[], &[])), "h"), "h");
    }

    #[test]
    fn dns_validation() {
        assert!(
            validate_dns(&dns(
                &["10.0.0.1", "fd00::1"],
                &["a.b"],
                &["ndots:2", "edns0"]
            ))
            .is_ok()
        );
        assert!(validate_dns(&dns(&["not-an-ip"], &[], &[])).is_err());
        assert!(validate_dns(&dns(&[], &[], &["bogus:1"])).is_err());
        assert!(validate_dns(&dns(&[], &[], &["ndots:x"])).is_err());
        assert!(validate_dns(&dns(&[], &["has space"], &[])).is_err());
    }

    #[test]
    fn hosts_names_the_pod_on_its_ips() {
        let h = hosts("web-0", &["10.88.0.5".parse().unwrap()]);
        assert!(h.contains("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.88.0.5\tweb-0\n"));
    }

    #[test]
    fn hostnames() {
        assert!(validate_hostname("web-0.example").is_ok());
        assert!(validate_hostname("").is_err());
        assert!(validate_hostname("bad_name").is_err());
        assert!(validate_hostname(&"a".repeat(65)).is_err());
    }
}
