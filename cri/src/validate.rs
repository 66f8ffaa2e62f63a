//! The CRI's string fields checked at the API edge, before any work, by
//! one set of rules shared by pods and containers. A field that berth
//! would later write into a file, a command line, a CNI_ARGS list or a
//! netfilter rule is refused here with InvalidArgument, naming the field,
//! instead of failing deep in network setup with Unknown.
//!
//! The rules:
//! - **identifiers** (pod name, namespace and uid; container name; runtime
//!   handler): 1 to 253 bytes of letters, digits, `.`, `_` and `-`, as
//!   Kubernetes names and uids are. Nothing a CNI_ARGS list (`;`, `=`), a
//!   path (`/`) or a line (newline) would read differently.
//! - **free text** (label and annotation keys and values, the command,
//!   args and environment): anything but NUL, which no C string or file
//!   carries. Annotation values are JSON or prose and may hold newlines.
//! - **paths** (log directory, working dir, mount and device paths):
//!   absolute where the field must be, no NUL, no `..` component.
//! - **addresses** (port mappings' host_ip, DNS servers): parse, or are
//!   refused (an unparsable host_ip was read as "every address").
//!
//! Domain rules that need the pod's config (cgroup parents, sysctls against
//! its namespaces) stay with berth-pod; hostname and DNS config are
//! berth-pod's rules too (`berth_pod::files`), called from here.

use std::net::IpAddr;
use std::path::{Component, Path};

use k8s_cri::v1 as cri;
use tonic::Status;

/// The longest identifier (a DNS subdomain's limit).
const MAX_ID: usize = 253;

fn invalid(msg: String) -> Status {
    Status::invalid_argument(msg)
}

/// An identifier: see the module doc.
pub fn identifier(field: &str, v: &str) -> Result<(), Status> {
    if v.is_empty() {
        return Err(invalid(format!("{field} is required")));
    }
    if v.len() > MAX_ID {
        return Err(invalid(format!(
            "{field} is {} bytes long (at most {MAX_ID})",
            v.len()
        )));
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(format!(
            "{field} {v:?} has {c:?}: only letters, digits, '.', '_' and '-' are allowed"
        )));
    }
    Ok(())
}

/// Free text: anything but NUL.
pub fn text(field: &str, v: &str) -> Result<(), Status> {
    if v.contains('\0') {
        return Err(invalid(format!("{field} contains a NUL byte")));
    }
    Ok(())
}

fn map<'a>(
    field: &str,
    m: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<(), Status> {
    for (k, v) in m {
        text(&format!("{field} key"), k)?;
        text(&format!("{field} {k:?}"), v)?;
    }
    Ok(())
}

/// A path: no NUL and no `..` component; absolute when `absolute`.
pub fn path(field: &str, v: &str, absolute: bool) -> Result<(), Status> {
    text(field, v)?;
    let p = Path::new(v);
    if absolute && !p.is_absolute() {
        return Err(invalid(format!("{field} {v:?} must be an absolute path")));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(invalid(format!("{field} {v:?} must not contain '..'")));
    }
    Ok(())
}

/// An IP address (empty allowed when `optional`).
pub fn address(field: &str, v: &str, optional: bool) -> Result<Option<IpAddr>, Status> {
    if v.is_empty() && optional {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| invalid(format!("{field} {v:?} is not an IP address")))
}

/// A bandwidth annotation: a Kubernetes quantity of bits per second,
/// between 1k and 1P as kubelet requires (a value that does not parse was
/// applied as no limit at all).
pub fn bandwidth(key: &str, v: &str) -> Result<u64, Status> {
    let bps = crate::quantity::parse(v).map_err(|e| invalid(format!("annotation {key}: {e}")))?;
    if !(1_000..=1_000_000_000_000_000).contains(&bps) {
        return Err(invalid(format!(
            "annotation {key}: {v} is outside 1k to 1P bits per second"
        )));
    }
    Ok(bps)
}

/// RunPodSandbox's config and handler.
pub fn pod(c: &cri::PodSandboxConfig, handler: &str) -> Result<(), Status> {
    let m = c
        .metadata
        .as_ref()
        .ok_or_else(|| invalid("config.metadata is required".into()))?;
    identifier("metadata.name", &m.name)?;
    identifier("metadata.namespace", &m.namespace)?;
    identifier("metadata.uid", &m.uid)?;
    if !handler.is_empty() {
        identifier("runtime_handler", handler)?;
    }
    if !c.hostname.is_empty() {
        berth_pod::files::validate_hostname(&c.hostname).map_err(invalid)?;
    }
    if !c.log_directory.is_empty() {
        path("log_directory", &c.log_directory, true)?;
    }
    if let Some(d) = &c.dns_config {
        berth_pod::files::validate_dns(&berth_pod::Dns {
            servers: d.servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        })
        .map_err(invalid)?;
    }
    for p in &c.port_mappings {
        address("port_mappings.host_ip", &p.host_ip, true)?;
    }
    map("labels", &c.labels)?;
    map("annotations", &c.annotations)?;
    for key in [
        crate::network::INGRESS_BANDWIDTH,
        crate::network::EGRESS_BANDWIDTH,
    ] {
        if let Some(v) = c.annotations.get(key) {
            bandwidth(key, v)?;
        }
    }
    if let Some(l) = &c.linux {
        text("linux.cgroup_parent", &l.cgroup_parent)?;
        map("linux.sysctls", &l.sysctls)?;
    }
    Ok(())
}

/// CreateContainer's config. Returns the container's name and attempt.
pub fn container(c: &cri::ContainerConfig) -> Result<(String, u32), Status> {
    let m = c
        .metadata
        .as_ref()
        .ok_or_else(|| invalid("config.metadata is required".into()))?;
    identifier("config.metadata.name", &m.name)?;
    let image = c.image.as_ref().map(|i| i.image.as_str()).unwrap_or("");
    if image.is_empty() {
        return Err(invalid("config.image.image is required".into()));
    }
    text("config.image.image", image)?;
    for a in c.command.iter().chain(&c.args) {
        text("config.command/args", a)?;
    }
    for kv in &c.envs {
        if kv.key.is_empty() || kv.key.contains('=') {
            return Err(invalid(format!(
                "config.envs: variable name {:?} must be non-empty and without '='",
                kv.key
            )));
        }
        text("config.envs name", &kv.key)?;
        text(&format!("config.envs {:?}", kv.key), &kv.value)?;
    }
    if !c.working_dir.is_empty() {
        path("config.working_dir", &c.working_dir, true)?;
    }
    if !c.log_path.is_empty() {
        path("config.log_path", &c.log_path, false)?;
    }
    for mnt in &c.mounts {
        path("config.mounts container_path", &mnt.container_path, true)?;
        text("config.mounts host_path", &mnt.host_path)?;
        if let Some(i) = &mnt.image {
            text("config.mounts image", &i.image)?;
        }
    }
    for d in &c.devices {
        path("config.devices container_path", &d.container_path, true)?;
        text("config.devices host_path", &d.host_path)?;
        text("config.devices permissions", &d.permissions)?;
    }
    map("config.labels", &c.labels)?;
    map("config.annotations", &c.annotations)?;
    Ok((m.name.clone(), m.attempt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn pod_config(name: &str, ns: &str, uid: &str) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                namespace: ns.into(),
                uid: uid.into(),
                attempt: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pod_identifiers_cni_args_cannot_carry_are_refused() {
        assert!(pod(&pod_config("web-0", "default", "0c9e-11"), "").is_ok());
        for (n, ns, uid) in [
            ("web;rm", "default", "u"),
            ("web", "def=ault", "u"),
            ("web", "default", "u\n1"),
            ("", "default", "u"),
            ("web", "", "u"),
            ("web", "default", ""),
            ("a/b", "default", "u"),
            ("web", "default", "u\0"),
        ] {
            let e = pod(&pod_config(n, ns, uid), "").unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{n:?} {ns:?} {uid:?}");
        }
        let long = "a".repeat(254);
        assert!(pod(&pod_config(&long, "default", "u"), "").is_err());
        assert!(pod(&pod_config("web", "default", "u"), "run;c").is_err());
    }

    #[test]
    fn a_host_ip_that_does_not_parse_is_refused() {
        let mut c = pod_config("web", "default", "u");
        c.port_mappings.push(cri::PortMapping {
            container_port: 80,
            host_port: 8080,
            host_ip: "not-an-ip".into(),
            ..Default::default()
        });
        let e = pod(&c, "").unwrap_err();
        assert!(e.message().contains("host_ip"), "{e:?}");
        c.port_mappings[0].host_ip = "127.0.0.1".into();
        assert!(pod(&c, "").is_ok());
        c.port_mappings[0].host_ip = String::new();
        assert!(pod(&c, "").is_ok());
    }

    #[test]
    fn bandwidth_annotations_must_parse_and_be_reasonable() {
        let mut c = pod_config("web", "default", "u");
        for (v, ok) in [
            ("1.5M", true),
            ("100Mi", true),
            ("1e6", true),
            ("500k", true),
            ("10X", false),
            ("2.5e3k", false),
            ("10", false),
            ("2P", false),
        ] {
            c.annotations
                .insert("kubernetes.io/ingress-bandwidth".into(), v.into());
            assert_eq!(pod(&c, "").is_ok(), ok, "{v}");
        }
    }

    #[test]
    fn pod_paths_dns_and_maps_are_checked() {
        let mut c = pod_config("web", "default", "u");
        c.log_directory = "relative/logs".into();
        assert!(pod(&c, "").is_err());
        c.log_directory = "/var/log/pods/../../etc".into();
        assert!(pod(&c, "").is_err());
        c.log_directory = "/var/log/pods/x".into();
        assert!(pod(&c, "").is_ok());
        c.dns_config = Some(cri::DnsConfig {
            servers: vec!["10.0.0.10".into()],
            searches: vec!["a.svc\nnameserver 6.6.6.6".into()],
            options: vec![],
        });
        assert!(pod(&c, "").is_err());
        c.dns_config = None;
        c.annotations
            .insert("k".into(), "multi\nline is fine".into());
        assert!(pod(&c, "").is_ok());
        c.annotations.insert("k".into(), "nul\0".into());
        assert!(pod(&c, "").is_err());
    }

    fn container_config(name: &str) -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 2,
            }),
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn containers_are_checked_by_the_same_rules() {
        assert_eq!(
            container(&container_config("app")).unwrap(),
            ("app".to_string(), 2)
        );
        assert!(container(&container_config("app;x")).is_err());
        assert!(container(&container_config("")).is_err());
        let mut c = container_config("app");
        c.image = None;
        assert!(container(&c).is_err());
        let mut c = container_config("app");
        c.envs.push(cri::KeyValue {
            key: "A=B".into(),
            value: "x".into(),
        });
        assert!(container(&c).is_err());
        let mut c = container_config("app");
        c.working_dir = "tmp".into();
        assert!(container(&c).is_err());
        let mut c = container_config("app");
        c.args.push("a\0b".into());
        assert!(container(&c).is_err());
        let mut c = container_config("app");
        c.mounts.push(cri::Mount {
            container_path: "/data/../etc".into(),
            host_path: "/srv".into(),
            ..Default::default()
        });
        assert!(container(&c).is_err());
    }
}
