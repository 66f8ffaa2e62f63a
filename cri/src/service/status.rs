//! `Status`: the RuntimeReady and NetworkReady conditions kubelet gates the
//! node on, and, verbose, a JSON picture of the daemon for operators.

use std::collections::HashMap;
use std::path::Path;

use berth_cgroups::CgroupDriver;
use k8s_cri::v1::{
    RuntimeCondition, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus, StatusResponse,
};
use serde_json::json;

use super::Shared;
use crate::settings::NetworkSettings;

pub const RUNTIME_READY: &str = "RuntimeReady";
pub const NETWORK_READY: &str = "NetworkReady";

fn condition(kind: &str, failure: Option<(&str, String)>) -> RuntimeCondition {
    match failure {
        None => RuntimeCondition {
            r#type: kind.into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        },
        Some((reason, message)) => RuntimeCondition {
            r#type: kind.into(),
            status: false,
            reason: reason.into(),
            message,
        },
    }
}

/// Why the runtime cannot run pods, if it cannot.
fn runtime_failure(shared: &Shared) -> Option<(&'static str, String)> {
    if let Err(e) = shared.store.schema_version() {
        return Some(("StoreUnavailable", e.to_string()));
    }
    let state = &shared.config.daemon.state_dir;
    if !state.is_dir() {
        return Some((
            "StateDirMissing",
            format!("state dir {} does not exist", state.display()),
        ));
    }
    if let Err(e) = shared.containers.handler_binary("") {
        return Some(("RuntimeBinaryMissing", e.to_string()));
    }
    if shared.config.pod.cgroup_driver == CgroupDriver::Systemd
        && !Path::new("/run/systemd/system").is_dir()
    {
        return Some((
            "SystemdNotRunning",
            "pod.cgroup_driver is systemd but systemd is not running on this node".into(),
        ));
    }
    None
}

pub fn status(shared: &Shared, verbose: bool) -> StatusResponse {
    let network = shared.pods.network().status();
    let net_failure = (!network.ready()).then(|| (network.reason, network.message.clone()));
    let mut network_ready = condition(NETWORK_READY, net_failure);
    if network_ready.status && !shared.pods.network().has_pod_cidrs() {
        // Ready, but every node would allocate from the same subnets.
        network_ready.reason = "NoPodCIDR".into();
        network_ready.message =
            "kubelet has not sent this node's pod CIDR (UpdateRuntimeConfig) yet: \
             pods get addresses from the network config's own subnets"
                .into();
    }
    let conditions = vec![
        condition(RUNTIME_READY, runtime_failure(shared)),
        network_ready,
    ];
    let info = if verbose {
        info(shared, &network)
    } else {
        HashMap::new()
    };
    StatusResponse {
        status: Some(RuntimeStatus { conditions }),
        info,
        runtime_handlers: runtime_handlers(shared),
        // SupplementalGroupsPolicy (Merge and Strict) and the resolved
        // ContainerUser in ContainerStatus: berth-spec implements both.
        features: Some(k8s_cri::v1::RuntimeFeatures {
            supplemental_groups_policy: true,
        }),
    }
}

/// The configured RuntimeClass handlers, the default one also under the
/// empty name (as kubelet expects), with what each truly supports:
/// recursive read-only mounts when its runtime lists `rro` (asked once)
/// and the kernel has mount_setattr (Linux 5.12); user namespaces, volumes
/// included, when its runtime lists the `user` namespace (it joins the
/// pod's; berthd makes the idmapped mounts) and the kernel idmaps the
/// mounts of overlayfs layers (Linux 5.19).
fn runtime_handlers(shared: &Shared) -> Vec<RuntimeHandler> {
    // The kernel does not change under a running daemon: read it once.
    static KERNEL_RRO: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    static KERNEL_IDMAP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let kernel_rro = *KERNEL_RRO.get_or_init(|| kernel_at_least(5, 12));
    let kernel_idmap = *KERNEL_IDMAP.get_or_init(|| kernel_at_least(5, 19));
    let rt = &shared.config.runtime;
    std::iter::once(String::new())
        .chain(rt.handlers.keys().cloned())
        .map(|name| {
            let rro = kernel_rro && shared.containers.handler_supports_rro(&name);
            let userns = kernel_idmap && shared.containers.handler_supports_userns(&name);
            RuntimeHandler {
                name,
                features: Some(RuntimeHandlerFeatures {
                    recursive_read_only_mounts: rro,
                    user_namespaces: userns,
                }),
            }
        })
        .collect()
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

fn info(shared: &Shared, network: &berth_cni::NetworkStatus) -> HashMap<String, String> {
    let mut info = HashMap::new();
    let mut put = |k: &str, v: serde_json::Value| {
        info.insert(k.to_owned(), v.to_string());
    };
    put(
        "config",
        serde_json::to_value(&shared.config).unwrap_or_default(),
    );
    put(
        "configFile",
        json!(
            shared
                .config_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(embedded defaults)".into())
        ),
    );
    let net = match &network.network {
        Some(n) => json!({
            "ready": true,
            "name": n.name,
            "cniVersion": n.cni_version,
            "source": n.source,
            "plugins": n.plugins.iter().map(|p| p.plugin_type.as_str()).collect::<Vec<_>>(),
        }),
        None => json!({ "ready": false, "reason": network.reason, "message": network.message }),
    };
    put("network", net);
    // Each registry's hosts.toml as pulls read it now (files, hosts in
    // order, or the file's error).
    put(
        "registries",
        serde_json::to_value(shared.images.registries()).unwrap_or_default(),
    );
    let settings = NetworkSettings::load(&shared.store);
    put(
        "runtimeConfig",
        match settings {
            Ok(s) => json!({ "podCIDRs": s.pod_cidrs }),
            Err(e) => json!({ "error": e.to_string() }),
        },
    );
    let hierarchy = berth_cgroups::detect(Path::new("/sys/fs/cgroup"));
    put(
        "cgroups",
        json!({
            "driver": shared.config.pod.cgroup_driver.as_str(),
            "hierarchy": match &hierarchy { Ok(h) => h.as_str().to_owned(), Err(e) => e.clone() },
        }),
    );
    put(
        "store",
        json!({
            "path": shared.store.path(),
            "schemaVersion": shared.store.schema_version().ok(),
        }),
    );
    let started = shared
        .started_at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    put(
        "daemon",
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "startedAt": started,
        }),
    );
    info
}
