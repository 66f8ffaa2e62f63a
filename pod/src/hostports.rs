//! Host ports two pods cannot both have: the same protocol and host port
//! on overlapping host addresses (an unspecified or empty address
//! overlaps every address). RunPodSandbox refuses the second pod with the
//! first one named, instead of both DNAT rules existing and one pod
//! silently taking the other's traffic. Pods on the host's network bind
//! their ports themselves and are not checked.

use std::net::IpAddr;

use crate::spec::{NsMode, PortMapping, SandboxRecord, SandboxSpec, SandboxState};

fn overlaps(a: &str, b: &str) -> bool {
    let any = |s: &str| s.is_empty() || s.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
    if any(a) || any(b) {
        return true;
    }
    match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

fn clash(a: &PortMapping, b: &PortMapping) -> bool {
    a.host_port != 0
        && a.host_port == b.host_port
        && a.protocol == b.protocol
        && overlaps(&a.host_ip, &b.host_ip)
}

/// Whether a pod's port mappings are applied by berth (its own network
/// namespace) and so claim host ports.
fn claims_ports(spec: &SandboxSpec) -> bool {
    spec.namespaces.network != NsMode::Node
}

/// The first of `spec`'s host ports that a pod of `pods` holds (one being
/// set up or ready; a stopped pod released its ports), as a message that
/// names both.
pub fn conflict<'a>(
    spec: &SandboxSpec,
    pods: impl IntoIterator<Item = &'a SandboxRecord>,
) -> Option<String> {
    if !claims_ports(spec) {
        return None;
    }
    for p in pods {
        let holds = matches!(p.state, SandboxState::Creating | SandboxState::Ready);
        if !holds || !claims_ports(&p.spec) {
            continue;
        }
        for want in &spec.port_mappings {
            if let Some(held) = p.spec.port_mappings.iter().find(|h| clash(want, h)) {
                let ip = if held.host_ip.is_empty() {
                    "*"
                } else {
                    held.host_ip.as_str()
                };
                return Some(format!(
                    "host port {}/{:?} is taken on {ip} by pod {}/{} ({})",
                    want.host_port,
                    want.protocol,
                    p.spec.metadata.namespace,
                    p.spec.metadata.name,
                    p.id
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Protocol;

    fn pm(protocol: Protocol, host_port: u16, host_ip: &str) -> PortMapping {
        PortMapping {
            protocol,
            container_port: 80,
            host_port,
            host_ip: host_ip.into(),
        }
    }

    #[test]
    fn same_port_protocol_and_overlapping_address_clash() {
        let tcp = Protocol::Tcp;
        assert!(clash(&pm(tcp, 8080, ""), &pm(tcp, 8080, "")));
        assert!(clash(&pm(tcp, 8080, "0.0.0.0"), &pm(tcp, 8080, "10.0.0.1")));
        assert!(clash(&pm(tcp, 8080, "10.0.0.1"), &pm(tcp, 8080, "")));
        assert!(clash(&pm(tcp, 8080, "::"), &pm(tcp, 8080, "fd00::1")));
        assert!(clash(
            &pm(tcp, 8080, "10.0.0.1"),
            &pm(tcp, 8080, "10.0.0.1")
        ));
        assert!(!clash(
            &pm(tcp, 8080, "10.0.0.1"),
            &pm(tcp, 8080, "10.0.0.2")
        ));
        assert!(!clash(&pm(tcp, 8080, ""), &pm(Protocol::Udp, 8080, "")));
        assert!(!clash(&pm(tcp, 8080, ""), &pm(tcp, 8081, "")));
        // No host port: nothing is claimed.
        assert!(!clash(&pm(tcp, 0, ""), &pm(tcp, 0, "")));
    }
}
