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

mod attachment;
mod cache;
mod conf;
mod error;
mod exec;
mod loopback;
mod verify;

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rscni_types::types::CNIResult;
use rscni_types::version::SpecVersion;
use serde_json::{Map, Value, json};

pub use attachment::{AddResult, Attachment, Bandwidth, ClientConfig, Dns, PortMapping, Protocol};
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
}
