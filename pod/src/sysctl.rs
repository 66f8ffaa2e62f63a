//! Pod sysctls: only namespaced ones can be set per pod, each in the
//! namespace it belongs to (kubelet's safe and unsafe lists are its own
//! business; the runtime's is "namespaced or refused").

/// Which pod namespace a sysctl lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysctlNs {
    Net,
    Ipc,
    Uts,
}

/// Classifies a sysctl name (dots or slashes), or says why it is refused.
pub fn classify(name: &str) -> Result<SysctlNs, String> {
    let n = name.replace('/', ".");
    if n.is_empty()
        || n.split('.')
            .any(|p| p.is_empty() || p == ".." || p.contains('\0'))
    {
        return Err(format!("sysctl {name:?} is not a valid name"));
    }
    let ipc = [
        "kernel.shmmax",
        "kernel.shmall",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
    ];
    if ipc.contains(&n.as_str()) || n.starts_with("fs.mqueue.") {
        return Ok(SysctlNs::Ipc);
    }
    if n == "kernel.hostname" || n == "kernel.domainname" {
        return Ok(SysctlNs::Uts);
    }
    if n.starts_with("net.") {
        return Ok(SysctlNs::Net);
    }
    Err(format!(
        "sysctl {name:?} is not namespaced: it would change the whole node"
    ))
}

/// `/proc/sys/...` path of a sysctl (dots become slashes).
pub fn proc_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/proc/sys").join(name.replace('.', "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_ones_are_accepted_in_their_namespace() {
        assert_eq!(
            classify("net.ipv4.ip_unprivileged_port_start"),
            Ok(SysctlNs::Net)
        );
        assert_eq!(classify("net/ipv4/ping_group_range"), Ok(SysctlNs::Net));
        assert_eq!(classify("kernel.shm_rmid_forced"), Ok(SysctlNs::Ipc));
        assert_eq!(classify("fs.mqueue.msg_max"), Ok(SysctlNs::Ipc));
        assert_eq!(classify("kernel.domainname"), Ok(SysctlNs::Uts));
    }

    #[test]
    fn node_wide_and_malformed_ones_are_refused() {
        for bad in [
            "kernel.panic",
            "vm.swappiness",
            "fs.file-max",
            "net..x",
            "",
            "net.ipv4/../../x",
        ] {
            assert!(classify(bad).is_err(), "{bad}");
        }
        assert_eq!(
            proc_path("net.ipv4.ip_forward"),
            std::path::PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
    }
}
