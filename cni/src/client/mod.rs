//! The CNI client: the runtime side that invokes CNI plugins (CNI spec 1.1,
//! "Section 4: Plugin Delegation / Execution protocol", with libcni's
//! behaviour where the spec leaves room).
//!
//! - [`Cni::add`] runs ADD on each plugin of the network list in order,
//!   chaining results through `prevResult`; if plugin N fails, DEL runs on
//!   plugins N..=0 (reverse order; N too, as it may have half set up) so
//!   nothing half-set-up remains, then the error is returned. On success
//!   the list, the result, `CNI_ARGS`, the capability arguments, ifname and
//!   netns are cached on disk (see below).
//! - [`Cni::del`] runs DEL in reverse order with the *cached* list and the
//!   cached result as `prevResult`, so it works after a daemon restart and
//!   after the conf dir changed or was emptied; then removes the cache
//!   file. Without a cache it uses the current network (there may be a
//!   half-done ADD to undo); with neither it succeeds doing nothing. DEL is
//!   idempotent.
//! - [`Cni::check`] runs CHECK with the cached list and result.
//! - [`Cni::status`] runs STATUS (1.1.0) on each plugin that supports it.
//! - [`Cni::gc`] DELs cached attachments not in the valid set and runs GC
//!   (1.1.0) with `cni.dev/valid-attachments` on each plugin.
//!
//! # Result cache
//!
//! `<cache_dir>/<network name>-<container id>-<ifname>`, a JSON document
//! (`kind` = `berthCniCacheV1`) with `networkName`, `containerId`,
//! `ifName`, `netns`, `cniArgs` (`[[key, value], ...]`), `capabilityArgs`,
//! `config` (the network config list exactly as the plugins were run with
//! it, as a JSON object) and `result` (the final ADD result in the list's
//! cniVersion). Written atomically (temp file + fsync + rename + directory
//! fsync), mode 0600 in a 0700 directory, since configs may hold secrets.
//! The cache dir should be berth's own (`/var/lib/berth/cni/results` by
//! default), not libcni's `/var/lib/cni/results`: GC treats every entry in
//! it as berth's.
//!
//! # Loopback
//!
//! berth does not need the `loopback` plugin: [`set_loopback_up`] sets `lo`
//! up inside the pod netns with one netlink request, sent from a dedicated
//! std thread that enters the netns with setns(2) and restores its own
//! before it ends (never a tokio worker). A network list that names
//! `loopback` still works like any other plugin.

mod cache;
mod conf;
mod error;
mod exec;
mod loopback;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rscni_types::types::CNIResult;
use rscni_types::version::SpecVersion;
use serde::Serialize;
use serde_json::{Map, Value, json};

pub use error::CniError;
pub use loopback::set_loopback_up;
pub use rscni_types::types::GcAttachment;

use exec::{Cmd, Invocation, Target};

use crate::netconf::{NetConfError, NetworkConfigList, NetworkStatus};
use crate::watch::NetworkWatch;

const V0_4_0: SpecVersion = SpecVersion::new(0, 4, 0);
const V1_1_0: SpecVersion = SpecVersion::new(1, 1, 0);

/// The capability name under which pod annotations are passed.
pub const POD_ANNOTATIONS_CAPABILITY: &str = "io.kubernetes.cri.pod-annotations";

/// Where the client finds networks and plugins, where it caches results,
/// and how long a plugin may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The CNI conf dir (the first valid list in lexical order is used).
    pub conf_dir: PathBuf,
    /// Directories searched, in order, for plugin binaries (`CNI_PATH`).
    pub bin_dirs: Vec<PathBuf>,
    /// The result cache directory (created on first ADD).
    pub cache_dir: PathBuf,
    /// Per-plugin limit for ADD.
    pub add_timeout: Duration,
    /// Per-plugin limit for DEL (also the rollback of a failed ADD) and GC.
    pub del_timeout: Duration,
    /// Per-plugin limit for CHECK.
    pub check_timeout: Duration,
    /// Per-plugin limit for STATUS and VERSION (kubelet's Status is polled).
    pub status_timeout: Duration,
}

/// The default cache dir.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/berth/cni/results";

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig::new(&crate::Config::default(), DEFAULT_CACHE_DIR)
    }
}

impl ClientConfig {
    /// The `[cni]` section's dirs, a cache dir, and default timeouts
    /// (ADD/DEL/CHECK 60 s, STATUS/VERSION 10 s).
    pub fn new(cni: &crate::Config, cache_dir: impl Into<PathBuf>) -> Self {
        ClientConfig {
            conf_dir: cni.conf_dir.clone(),
            bin_dirs: cni.bin_dirs.clone(),
            cache_dir: cache_dir.into(),
            add_timeout: Duration::from_secs(60),
            del_timeout: Duration::from_secs(60),
            check_timeout: Duration::from_secs(60),
            status_timeout: Duration::from_secs(10),
        }
    }
}

/// A port mapping, passed as the `portMappings` capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    /// The host address to bind; None for all.
    #[serde(rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
}

/// A port mapping's transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

/// DNS settings, passed as the `dns` capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Dns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// Traffic shaping, passed as the `bandwidth` capability (rates in bits/s,
/// bursts in bits, as the bandwidth plugin reads them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    pub ingress_rate: u64,
    pub ingress_burst: u64,
    pub egress_rate: u64,
    pub egress_burst: u64,
}

/// One pod's attachment to the network: what ADD, DEL and CHECK are about.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// `CNI_CONTAINERID`: the sandbox id (letters, digits, `_`, `.`, `-`).
    pub container_id: String,
    /// `CNI_NETNS`: the pinned network namespace. Required for ADD; on DEL
    /// an empty path means "the one cached at ADD".
    pub netns: PathBuf,
    /// `CNI_IFNAME`, `eth0` by default.
    pub ifname: String,
    /// `K8S_POD_NAMESPACE` in `CNI_ARGS`.
    pub pod_namespace: String,
    /// `K8S_POD_NAME` in `CNI_ARGS`.
    pub pod_name: String,
    /// `K8S_POD_UID` in `CNI_ARGS`.
    pub pod_uid: String,
    /// The `portMappings` capability (omitted when empty).
    pub port_mappings: Vec<PortMapping>,
    /// The `dns` capability.
    pub dns: Option<Dns>,
    /// The `bandwidth` capability.
    pub bandwidth: Option<Bandwidth>,
    /// The `io.kubernetes.cri.pod-annotations` capability (omitted when empty).
    pub annotations: BTreeMap<String, String>,
    /// Any other capability arguments by name (e.g. `cgroupPath`, `ips`,
    /// `mac`); the named fields above take precedence.
    pub extra_capabilities: BTreeMap<String, Value>,
}

impl Default for Attachment {
    fn default() -> Self {
        Attachment {
            container_id: String::new(),
            netns: PathBuf::new(),
            ifname: "eth0".into(),
            pod_namespace: String::new(),
            pod_name: String::new(),
            pod_uid: String::new(),
            port_mappings: Vec::new(),
            dns: None,
            bandwidth: None,
            annotations: BTreeMap::new(),
            extra_capabilities: BTreeMap::new(),
        }
    }
}

impl Attachment {
    /// An attachment of `container_id` on `eth0` in `netns`.
    pub fn new(container_id: impl Into<String>, netns: impl Into<PathBuf>) -> Self {
        Attachment {
            container_id: container_id.into(),
            netns: netns.into(),
            ..Attachment::default()
        }
    }

    /// `CNI_ARGS` as key/value pairs, the way kubelet's dockershim and
    /// containerd pass them.
    pub fn cni_args(&self) -> Vec<(String, String)> {
        [
            ("IgnoreUnknown", "1"),
            ("K8S_POD_NAMESPACE", self.pod_namespace.as_str()),
            ("K8S_POD_NAME", self.pod_name.as_str()),
            ("K8S_POD_INFRA_CONTAINER_ID", self.container_id.as_str()),
            ("K8S_POD_UID", self.pod_uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// The capability arguments the runtime supplies; each plugin gets those
    /// it declares in `capabilities`, as `runtimeConfig`.
    pub fn capability_args(&self) -> Map<String, Value> {
        let mut caps: Map<String, Value> = self
            .extra_capabilities
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut put = |key: &str, value: Result<Value, serde_json::Error>| {
            if let Ok(v) = value {
                caps.insert(key.to_owned(), v);
            }
        };
        if !self.port_mappings.is_empty() {
            put("portMappings", serde_json::to_value(&self.port_mappings));
        }
        if let Some(dns) = &self.dns {
            put("dns", serde_json::to_value(dns));
        }
        if let Some(bw) = &self.bandwidth {
            put("bandwidth", serde_json::to_value(bw));
        }
        if !self.annotations.is_empty() {
            put(
                POD_ANNOTATIONS_CAPABILITY,
                serde_json::to_value(&self.annotations),
            );
        }
        caps
    }

    /// Checks what ends up in file names and the plugin environment.
    fn validate(&self, need_netns: bool) -> Result<(), CniError> {
        let bad = |field, reason: &str| {
            Err(CniError::InvalidAttachment {
                field,
                reason: reason.to_owned(),
            })
        };
        let id = &self.container_id;
        if id.is_empty() {
            return bad("container_id", "empty");
        }
        if id.len() > 128 {
            return bad("container_id", "longer than 128 characters");
        }
        if !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            || id.starts_with('.')
        {
            return bad(
                "container_id",
                "only letters, digits, '_', '.' and '-' are allowed (not first '.')",
            );
        }
        let ifname = &self.ifname;
        if ifname.is_empty() || ifname.len() > 15 || ifname == "." || ifname == ".." {
            return bad("ifname", "must be 1 to 15 bytes and not '.' or '..'");
        }
        if ifname
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        {
            return bad("ifname", "must not contain '/', ':' or whitespace");
        }
        for (field, v) in [
            ("pod_namespace", &self.pod_namespace),
            ("pod_name", &self.pod_name),
            ("pod_uid", &self.pod_uid),
        ] {
            if v.contains([';', '=']) || v.chars().any(char::is_control) {
                return bad(field, "must not contain ';', '=' or control characters");
            }
        }
        if self.netns.to_str().is_none() {
            return bad("netns", "not UTF-8");
        }
        if need_netns && !self.netns.is_absolute() {
            return bad("netns", "must be an absolute path");
        }
        Ok(())
    }
}

/// What ADD returns.
#[derive(Debug, Clone, PartialEq)]
pub struct AddResult {
    /// The network the pod was attached to.
    pub network: String,
    /// The pod's addresses on its interface, in result order.
    pub ips: Vec<IpAddr>,
    /// The first IPv4 of `ips` (PodSandboxStatus's primary IP when present).
    pub ipv4: Option<Ipv4Addr>,
    /// The first IPv6 of `ips`.
    pub ipv6: Option<Ipv6Addr>,
    /// The final result, parsed.
    pub result: CNIResult,
    /// The final result as JSON, in the list's cniVersion.
    pub raw: Value,
}

impl AddResult {
    fn new(network: String, raw: Value, result: CNIResult, ifname: &str) -> Self {
        let ips = conf::pod_ips(&result, ifname);
        let (ipv4, ipv6) = conf::first_of_each(&ips);
        AddResult {
            network,
            ips,
            ipv4,
            ipv6,
            result,
            raw,
        }
    }

    /// The IPs for PodSandboxStatus: the first IPv4 then the first IPv6
    /// (what kubelet expects for dual-stack), or whatever one exists.
    pub fn pod_ips(&self) -> Vec<IpAddr> {
        self.ipv4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.ipv6.map(IpAddr::V6))
            .collect()
    }
}

/// The CNI client. Cheap to share (`Arc<Cni>`); operations on the same
/// (container id, ifname) are serialized, others run concurrently.
#[derive(Debug)]
pub struct Cni {
    config: ClientConfig,
    watch: NetworkWatch,
    cni_path: String,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Whether a plugin binary supports 1.1.0, keyed by path and stat.
    versions: Mutex<HashMap<PathBuf, (VersionKey, bool)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VersionKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

struct AttachmentLock<'a> {
    cni: &'a Cni,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for AttachmentLock<'_> {
    fn drop(&mut self) {
        let mut locks = self.cni.locks.lock().unwrap_or_else(|p| p.into_inner());
        // The map and this guard hold the only references: nobody waits.
        if locks
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 2)
        {
            locks.remove(&self.key);
        }
        drop(self.guard.take());
    }
}

/// A plugin of a list with its binary.
struct Plugins<'a> {
    list: &'a NetworkConfigList,
    binaries: Vec<PathBuf>,
}

impl Cni {
    /// A client for `config`. Nothing is read until the first call.
    pub fn new(config: ClientConfig) -> Cni {
        let watch = NetworkWatch::new(crate::Config {
            conf_dir: config.conf_dir.clone(),
            bin_dirs: config.bin_dirs.clone(),
        });
        let cni_path = config
            .bin_dirs
            .iter()
            .map(|d| d.to_string_lossy())
            .collect::<Vec<_>>()
            .join(":");
        Cni {
            config,
            watch,
            cni_path,
            locks: Mutex::new(HashMap::new()),
            versions: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Whether the pod network is usable, as CRI `Status` reports it
    /// (config present and every plugin binary found; no plugin is run).
    pub fn network_status(&self) -> NetworkStatus {
        self.watch.status()
    }

    /// Attaches the pod: ADD on each plugin in order; returns the pod IPs.
    pub async fn add(&self, a: &Attachment) -> Result<AddResult, CniError> {
        a.validate(true)?;
        let _lock = self.lock(a).await;
        let list = self.network()?;
        let plugins = self.plugins(&list)?;
        let caps = a.capability_args();
        let args = a.cni_args();
        let args_str = conf::cni_args_string(&args);
        let netns = a.netns.to_str().unwrap_or_default();
        let target = Target {
            container_id: &a.container_id,
            netns,
            ifname: &a.ifname,
            args: &args_str,
        };
        tracing::info!(
            pod_id = %a.container_id,
            pod = %format_args!("{}/{}", a.pod_namespace, a.pod_name),
            network = %list.name,
            netns,
            "CNI ADD"
        );
        let mut prev: Option<(Value, CNIResult)> = None;
        for (i, plugin) in list.plugins.iter().enumerate() {
            let stdin = conf::plugin_config(&list, plugin, prev.as_ref().map(|p| &p.0), &caps, &[]);
            let inv = Invocation {
                plugin: &plugin.plugin_type,
                binary: &plugins.binaries[i],
                command: Cmd::Add,
                target: Some(target),
                cni_path: &self.cni_path,
                stdin: &stdin,
                timeout: self.config.add_timeout,
            };
            let out = exec::run(&inv).await.and_then(|out| {
                conf::normalize_result(&out, &list.cni_version).map_err(|reason| {
                    CniError::BadResult {
                        plugin: plugin.plugin_type.clone(),
                        command: "ADD",
                        reason,
                    }
                })
            });
            match out {
                Ok(r) => prev = Some(r),
                Err(e) => {
                    tracing::warn!(
                        pod_id = %a.container_id,
                        network = %list.name,
                        plugin = %plugin.plugin_type,
                        error = %e,
                        "CNI ADD failed; undoing the plugins already run"
                    );
                    let done = Plugins {
                        list: &list,
                        binaries: plugins.binaries[..=i].to_vec(),
                    };
                    self.rollback(&done, prev.as_ref().map(|p| &p.0), &caps, target)
                        .await;
                    return Err(e);
                }
            }
        }
        let Some((raw, result)) = prev else {
            // A parsed list has at least one plugin.
            return Err(CniError::NoNetwork(format!(
                "network {:?} has no plugins",
                list.name
            )));
        };
        let entry = cache::Entry {
            kind: cache::KIND.into(),
            network_name: list.name.clone(),
            container_id: a.container_id.clone(),
            if_name: a.ifname.clone(),
            netns: netns.to_owned(),
            cni_args: args,
            capability_args: caps.clone(),
            config: conf::list_json(&list),
            result: raw.clone(),
        };
        let dir = self.config.cache_dir.clone();
        if let Err(e) = blocking(move || cache::write(&dir, &entry)).await {
            // Without a cache, DEL could not undo this after a restart or a
            // config change: undo it now.
            tracing::warn!(pod_id = %a.container_id, error = %e, "cannot cache the CNI result; undoing ADD");
            self.rollback(&plugins, Some(&raw), &caps, target).await;
            return Err(e);
        }
        let res = AddResult::new(list.name.clone(), raw, result, &a.ifname);
        tracing::info!(
            pod_id = %a.container_id,
            network = %list.name,
            ips = ?res.ips,
            "CNI ADD done"
        );
        Ok(res)
    }

    /// Detaches the pod: DEL on each plugin in reverse order, from the
    /// cache when there is one. Idempotent; a no-op when nothing is known.
    pub async fn del(&self, a: &Attachment) -> Result<(), CniError> {
        a.validate(false)?;
        let _lock = self.lock(a).await;
        let dir = self.config.cache_dir.clone();
        let (cid, ifname) = (a.container_id.clone(), a.ifname.clone());
        let found = blocking(move || cache::find(&dir, &cid, &ifname)).await?;
        let mut first_err = None;
        let mut used_cache = false;
        let mut corrupt = Vec::new();
        for (path, entry) in found {
            match entry {
                Ok(entry) => {
                    used_cache = true;
                    match self.del_cached(a, &path, &entry).await {
                        Ok(()) => blocking(move || cache::remove(&path)).await?,
                        Err(e) => {
                            first_err.get_or_insert(e);
                        }
                    }
                }
                Err(reason) => {
                    tracing::warn!(
                        pod_id = %a.container_id,
                        path = %path.display(),
                        reason,
                        "ignoring a corrupt CNI cache file"
                    );
                    corrupt.push(path);
                }
            }
        }
        if !used_cache {
            match self.watch.network() {
                Ok(list) => {
                    // No cache: the ADD may have stopped half-way (crash);
                    // DEL with the current network cleans that up.
                    let plugins = self.plugins(&list)?;
                    let args = conf::cni_args_string(&a.cni_args());
                    let target = Target {
                        container_id: &a.container_id,
                        netns: a.netns.to_str().unwrap_or_default(),
                        ifname: &a.ifname,
                        args: &args,
                    };
                    tracing::info!(pod_id = %a.container_id, network = %list.name, "CNI DEL (no cached result)");
                    if let Err(e) = self
                        .run_del(&plugins, None, &a.capability_args(), target)
                        .await
                    {
                        first_err.get_or_insert(e);
                    }
                }
                Err(reason) => {
                    tracing::debug!(
                        pod_id = %a.container_id,
                        reason,
                        "CNI DEL: no cached result and no network config; nothing to do"
                    );
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        for path in corrupt {
            blocking(move || cache::remove(&path)).await?;
        }
        Ok(())
    }

    /// Checks the pod's attachment: CHECK on each plugin in order, with the
    /// cached list and result.
    pub async fn check(&self, a: &Attachment) -> Result<(), CniError> {
        a.validate(false)?;
        let _lock = self.lock(a).await;
        let dir = self.config.cache_dir.clone();
        let (cid, ifname) = (a.container_id.clone(), a.ifname.clone());
        let found = blocking(move || cache::find(&dir, &cid, &ifname)).await?;
        let current = self.watch.network().ok().map(|l| l.name);
        let mut entries: Vec<(PathBuf, cache::Entry)> = found
            .into_iter()
            .filter_map(|(p, e)| e.ok().map(|e| (p, e)))
            .collect();
        // The current network's attachment first, if there are several.
        entries.sort_by_key(|(_, e)| Some(&e.network_name) != current.as_ref());
        let Some((path, entry)) = entries.into_iter().next() else {
            return Err(CniError::NotAttached {
                container_id: a.container_id.clone(),
                ifname: a.ifname.clone(),
            });
        };
        let list = cached_list(&path, &entry)?;
        if !conf::at_least(&list.cni_version, V0_4_0) {
            return Err(CniError::Unsupported {
                network: list.name.clone(),
                version: list.cni_version.clone(),
                command: "CHECK",
            });
        }
        if list.disable_check {
            return Ok(());
        }
        let plugins = self.plugins(&list)?;
        let args = conf::cni_args_string(&entry.cni_args);
        let netns = match a.netns.to_str() {
            Some("") | None => entry.netns.as_str(),
            Some(n) => n,
        };
        let target = Target {
            container_id: &a.container_id,
            netns,
            ifname: &a.ifname,
            args: &args,
        };
        for (plugin, binary) in list.plugins.iter().zip(&plugins.binaries) {
            let stdin = conf::plugin_config(
                &list,
                plugin,
                Some(&entry.result),
                &entry.capability_args,
                &[],
            );
            exec::run(&Invocation {
                plugin: &plugin.plugin_type,
                binary,
                command: Cmd::Check,
                target: Some(target),
                cni_path: &self.cni_path,
                stdin: &stdin,
                timeout: self.config.check_timeout,
            })
            .await?;
        }
        Ok(())
    }

    /// The network's readiness: STATUS (CNI 1.1) on each plugin whose
    /// VERSION lists 1.1.0 or later, in order; the first error is returned
    /// (codes 50/51 mean "not available"). Lists older than 1.1.0 and
    /// plugins that do not speak 1.1.0 count as ready once found.
    pub async fn status(&self) -> Result<(), CniError> {
        let list = self.network()?;
        let plugins = self.plugins(&list)?;
        if !conf::at_least(&list.cni_version, V1_1_0) {
            return Ok(());
        }
        for (plugin, binary) in list.plugins.iter().zip(&plugins.binaries) {
            if !self
                .supports_1_1(&list, &plugin.plugin_type, binary)
                .await?
            {
                tracing::debug!(plugin = %plugin.plugin_type, "plugin predates CNI 1.1; no STATUS");
                continue;
            }
            let stdin = conf::plugin_config(&list, plugin, None, &Map::new(), &[]);
            exec::run(&Invocation {
                plugin: &plugin.plugin_type,
                binary,
                command: Cmd::Status,
                target: None,
                cni_path: &self.cni_path,
                stdin: &stdin,
                timeout: self.config.status_timeout,
            })
            .await?;
        }
        Ok(())
    }

    /// Garbage collection: DELs every cached attachment not in `valid`
    /// (with its cached config, whatever network it was for), then runs GC
    /// (CNI 1.1, unless the list sets `disableGC`) with
    /// `cni.dev/valid-attachments` on each plugin of the current network
    /// that speaks 1.1.0. `valid` must include every pod being set up.
    pub async fn gc(&self, valid: &[GcAttachment]) -> Result<(), CniError> {
        let keep: HashSet<(&str, &str)> = valid
            .iter()
            .map(|v| (v.container_id.as_str(), v.ifname.as_str()))
            .collect();
        let dir = self.config.cache_dir.clone();
        let cached = blocking(move || cache::list(&dir)).await?;
        let mut errors = Vec::new();
        for (path, entry) in cached {
            let Ok(entry) = entry else { continue };
            if keep.contains(&(entry.container_id.as_str(), entry.if_name.as_str())) {
                continue;
            }
            tracing::info!(
                pod_id = %entry.container_id,
                network = %entry.network_name,
                "CNI GC: releasing a stale attachment"
            );
            let a = Attachment {
                container_id: entry.container_id.clone(),
                ifname: entry.if_name.clone(),
                ..Attachment::default()
            };
            let _lock = self.lock(&a).await;
            match self.del_cached(&a, &path, &entry).await {
                Ok(()) => {
                    if let Err(e) = blocking(move || cache::remove(&path)).await {
                        errors.push(e);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if let Ok(list) = self.watch.network()
            && conf::at_least(&list.cni_version, V1_1_0)
            && !list.disable_gc
        {
            self.gc_plugins(&list, valid, &mut errors).await;
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(CniError::Multiple(errors)),
        }
    }

    /// GC on each plugin of `list` that speaks 1.1.0; errors are collected.
    async fn gc_plugins(
        &self,
        list: &NetworkConfigList,
        valid: &[GcAttachment],
        errors: &mut Vec<CniError>,
    ) {
        let plugins = match self.plugins(list) {
            Ok(p) => p,
            Err(e) => {
                errors.push(e);
                return;
            }
        };
        let attachments = serde_json::to_value(valid).unwrap_or(json!([]));
        // libcni also sends the key under the name an early draft of the
        // spec used.
        let extra = [
            ("cni.dev/valid-attachments", attachments.clone()),
            ("cni.dev/attachments", attachments),
        ];
        for (plugin, binary) in list.plugins.iter().zip(&plugins.binaries) {
            match self.supports_1_1(list, &plugin.plugin_type, binary).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            }
            let stdin = conf::plugin_config(list, plugin, None, &Map::new(), &extra);
            let res = exec::run(&Invocation {
                plugin: &plugin.plugin_type,
                binary,
                command: Cmd::Gc,
                target: None,
                cni_path: &self.cni_path,
                stdin: &stdin,
                timeout: self.config.del_timeout,
            })
            .await;
            if let Err(e) = res {
                errors.push(e);
            }
        }
    }

    /// The cached ADD result of an attachment (for PodSandboxStatus after a
    /// daemon restart), preferring the current network's.
    pub async fn cached_result(
        &self,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<AddResult>, CniError> {
        let dir = self.config.cache_dir.clone();
        let (cid, ifn) = (container_id.to_owned(), ifname.to_owned());
        let found = blocking(move || cache::find(&dir, &cid, &ifn)).await?;
        let current = self.watch.network().ok().map(|l| l.name);
        let mut entries: Vec<(PathBuf, cache::Entry)> = found
            .into_iter()
            .filter_map(|(p, e)| e.ok().map(|e| (p, e)))
            .collect();
        entries.sort_by_key(|(_, e)| Some(&e.network_name) != current.as_ref());
        let Some((path, entry)) = entries.into_iter().next() else {
            return Ok(None);
        };
        let result: CNIResult =
            serde_json::from_value(entry.result.clone()).map_err(|e| CniError::BadCache {
                path,
                reason: format!("result: {e}"),
            })?;
        Ok(Some(AddResult::new(
            entry.network_name,
            entry.result,
            result,
            ifname,
        )))
    }

    // --- internals ---

    fn network(&self) -> Result<NetworkConfigList, CniError> {
        self.watch.network().map_err(CniError::NoNetwork)
    }

    fn plugins<'a>(&self, list: &'a NetworkConfigList) -> Result<Plugins<'a>, CniError> {
        let binaries = list
            .find_plugins(&self.config.bin_dirs)
            .map_err(|e| match e {
                NetConfError::PluginNotFound {
                    network,
                    plugin,
                    dirs,
                } => CniError::PluginNotFound {
                    network,
                    plugin,
                    dirs,
                },
                other => CniError::NoNetwork(other.to_string()),
            })?;
        Ok(Plugins { list, binaries })
    }

    async fn lock(&self, a: &Attachment) -> AttachmentLock<'_> {
        let key = format!("{}\0{}", a.container_id, a.ifname);
        let mutex = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(key.clone()).or_default().clone()
        };
        let guard = mutex.lock_owned().await;
        AttachmentLock {
            cni: self,
            key,
            guard: Some(guard),
        }
    }

    /// DEL of one cached attachment, with its cached list, result, args and
    /// capability arguments. The netns is the caller's, or the cached one.
    async fn del_cached(
        &self,
        a: &Attachment,
        path: &Path,
        entry: &cache::Entry,
    ) -> Result<(), CniError> {
        let list = cached_list(path, entry)?;
        let plugins = self.plugins(&list)?;
        let args = conf::cni_args_string(&entry.cni_args);
        let netns = match a.netns.to_str() {
            Some("") | None => entry.netns.as_str(),
            Some(n) => n,
        };
        let target = Target {
            container_id: &entry.container_id,
            netns,
            ifname: &entry.if_name,
            args: &args,
        };
        tracing::info!(
            pod_id = %entry.container_id,
            network = %list.name,
            netns,
            "CNI DEL"
        );
        self.run_del(
            &plugins,
            Some(&entry.result),
            &entry.capability_args,
            target,
        )
        .await
    }

    /// DEL on every plugin in reverse order. Every plugin is tried (so one
    /// failing plugin does not keep the others' resources, e.g. an IP,
    /// allocated); the first error is returned.
    async fn run_del(
        &self,
        plugins: &Plugins<'_>,
        result: Option<&Value>,
        caps: &Map<String, Value>,
        target: Target<'_>,
    ) -> Result<(), CniError> {
        let list = plugins.list;
        // Before 0.4.0 DEL gets no prevResult (as libcni).
        let prev = result.filter(|_| conf::at_least(&list.cni_version, V0_4_0));
        let mut first_err = None;
        for (plugin, binary) in list.plugins.iter().zip(&plugins.binaries).rev() {
            let stdin = conf::plugin_config(list, plugin, prev, caps, &[]);
            let res = exec::run(&Invocation {
                plugin: &plugin.plugin_type,
                binary,
                command: Cmd::Del,
                target: Some(target),
                cni_path: &self.cni_path,
                stdin: &stdin,
                timeout: self.config.del_timeout,
            })
            .await;
            if let Err(e) = res {
                tracing::warn!(
                    pod_id = %target.container_id,
                    network = %list.name,
                    plugin = %plugin.plugin_type,
                    error = %e,
                    "CNI DEL failed"
                );
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Undoes a failed ADD; failures are logged, the ADD error is what the
    /// caller sees.
    async fn rollback(
        &self,
        plugins: &Plugins<'_>,
        result: Option<&Value>,
        caps: &Map<String, Value>,
        target: Target<'_>,
    ) {
        if let Err(e) = self.run_del(plugins, result, caps, target).await {
            tracing::warn!(
                pod_id = %target.container_id,
                error = %e,
                "undoing a failed CNI ADD failed too"
            );
        }
    }

    /// Whether the plugin's VERSION lists 1.1.0 or later (cached per binary
    /// until it changes on disk).
    async fn supports_1_1(
        &self,
        list: &NetworkConfigList,
        plugin: &str,
        binary: &Path,
    ) -> Result<bool, CniError> {
        let key = std::fs::metadata(binary).ok().map(|m| VersionKey {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        });
        if let Some(key) = key {
            let versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((k, supports)) = versions.get(binary)
                && *k == key
            {
                return Ok(*supports);
            }
        }
        let stdin =
            serde_json::to_vec(&json!({ "cniVersion": list.cni_version })).unwrap_or_default();
        let out = exec::run(&Invocation {
            plugin,
            binary,
            command: Cmd::Version,
            target: None,
            cni_path: &self.cni_path,
            stdin: &stdin,
            timeout: self.config.status_timeout,
        })
        .await?;
        let info: Value = serde_json::from_slice(&out).map_err(|e| CniError::BadResult {
            plugin: plugin.to_owned(),
            command: "VERSION",
            reason: format!("not JSON: {e}"),
        })?;
        let supports = info
            .get("supportedVersions")
            .and_then(Value::as_array)
            .is_some_and(|vs| {
                vs.iter()
                    .filter_map(Value::as_str)
                    .any(|v| conf::at_least(v, V1_1_0))
            });
        if let Some(key) = key {
            let mut versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
            versions.insert(binary.to_owned(), (key, supports));
        }
        Ok(supports)
    }
}

/// The list a cache entry was made with.
fn cached_list(path: &Path, entry: &cache::Entry) -> Result<NetworkConfigList, CniError> {
    let bytes = serde_json::to_vec(&entry.config).unwrap_or_default();
    NetworkConfigList::parse(&bytes, false, path.to_owned()).map_err(|reason| CniError::BadCache {
        path: path.to_owned(),
        reason: format!("config: {reason}"),
    })
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CniError> + Send + 'static,
) -> Result<T, CniError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_args_and_capabilities() {
        let mut a = Attachment::new("abc", "/run/netns/x");
        a.pod_namespace = "ns".into();
        a.pod_name = "p".into();
        a.pod_uid = "u-1".into();
        assert_eq!(
            conf::cni_args_string(&a.cni_args()),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1"
        );
        assert!(a.capability_args().is_empty());
        a.port_mappings.push(PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Udp,
            host_ip: Some("127.0.0.1".parse().unwrap()),
        });
        a.dns = Some(Dns {
            servers: vec!["10.0.0.10".into()],
            searches: vec!["svc".into()],
            options: vec!["ndots:5".into()],
        });
        a.bandwidth = Some(Bandwidth {
            ingress_rate: 1000,
            ..Bandwidth::default()
        });
        a.annotations.insert("k".into(), "v".into());
        a.extra_capabilities
            .insert("cgroupPath".into(), json!("/kubepods/x"));
        let caps = a.capability_args();
        assert_eq!(
            caps["portMappings"],
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "udp", "hostIP": "127.0.0.1"}])
        );
        assert_eq!(
            caps["dns"],
            json!({"servers": ["10.0.0.10"], "searches": ["svc"], "options": ["ndots:5"]})
        );
        assert_eq!(
            caps["bandwidth"],
            json!({"ingressRate": 1000, "ingressBurst": 0, "egressRate": 0, "egressBurst": 0})
        );
        assert_eq!(caps[POD_ANNOTATIONS_CAPABILITY], json!({"k": "v"}));
        assert_eq!(caps["cgroupPath"], "/kubepods/x");
    }

    #[test]
    fn futures_are_send_and_the_client_is_shareable() {
        fn send<T: Send>(_: &T) {}
        fn share<T: Send + Sync>() {}
        share::<Cni>();
        let cni = Cni::new(ClientConfig::default());
        let a = Attachment::new("x", "/run/netns/x");
        send(&cni.add(&a));
        send(&cni.del(&a));
        send(&cni.check(&a));
        send(&cni.status());
        send(&cni.gc(&[]));
        send(&cni.cached_result("x", "eth0"));
        send(&set_loopback_up(Path::new("/run/netns/x")));
    }

    #[test]
    fn attachments_are_validated() {
        let ok = Attachment::new("abc-1_2.3", "/run/netns/x");
        assert!(ok.validate(true).is_ok());
        let cases: Vec<(Attachment, &str)> = vec![
            (Attachment::new("", "/n"), "container_id"),
            (Attachment::new("../x", "/n"), "container_id"),
            (Attachment::new("a/b", "/n"), "container_id"),
            (Attachment::new(".a", "/n"), "container_id"),
            (Attachment::new("a".repeat(129), "/n"), "container_id"),
            (
                Attachment {
                    ifname: "../../x".into(),
                    ..Attachment::new("a", "/n")
                },
                "ifname",
            ),
            (
                Attachment {
                    ifname: "a-very-long-ifname".into(),
                    ..Attachment::new("a", "/n")
                },
                "ifname",
            ),
            (
                Attachment {
                    pod_name: "x;K8S_POD_UID=y".into(),
                    ..Attachment::new("a", "/n")
                },
                "pod_name",
            ),
            (Attachment::new("a", "relative"), "netns"),
        ];
        for (a, field) in cases {
            match a.validate(true) {
                Err(CniError::InvalidAttachment { field: f, .. }) => assert_eq!(f, field, "{a:?}"),
                other => panic!("{a:?}: {other:?}"),
            }
        }
        // DEL may leave the netns empty.
        assert!(Attachment::new("a", "").validate(false).is_ok());
    }
}
