//! The container service's core: the `Containers` handle shared by every
//! operation (one file each: `create`, `start_stop`, `remove`, `exec`,
//! `update`, `recover`), the per-container locks, id resolution, and the
//! reads (status, list) served from the store's cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_cgroups::{CgroupDriver, Cgroups};
use berth_shim::proto::{self};
use berth_store::{Prefix, Store};
use tokio::sync::Mutex;

use crate::config::{Config, find_binary};
use crate::error::RuntimeError;
use crate::record::{CONTAINERS, ContainerRecord, State};
use crate::rootfs::Layout;
use crate::sealed::{BUILTIN_RUNTIME, SealedRuntimes};
use crate::shim::Shims;

/// How long the runtime may take to stop a container after SIGKILL.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(30);

/// Filter for [`Containers::list`].
#[derive(Debug, Clone, Default)]
pub struct ContainerFilter {
    pub id: Option<String>,
    pub state: Option<State>,
    pub pod_id: Option<String>,
    pub labels: HashMap<String, String>,
}

/// Where containers live and how they are run.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `<root>/containers`
    pub containers: PathBuf,
    /// `<state>`: shims under `shims/`, runtime roots under `runtime/`.
    pub state: PathBuf,
    /// berth's own directories (root and state): no container but a
    /// privileged one may mount them, or what holds them, writable.
    pub protected: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Containers {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) paths: Paths,
    pub(crate) shims: Shims,
    pub(crate) cgroups: Cgroups,
    pub(crate) driver: CgroupDriver,
    /// berthd's own oom_score_adj: containers never go below it.
    pub(crate) min_oom_score_adj: i32,
    /// `[runtime] default_rlimits`, parsed.
    pub(crate) rlimits: Vec<oci_spec::runtime::PosixRlimit>,
    /// The sealed copies every runtime call runs from.
    pub(crate) sealed: SealedRuntimes,
    pub(crate) locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    pub(crate) counters: crate::counters::Counters,
    pub(crate) events: crate::events::Events,
}

impl Containers {
    pub fn new(
        config: Config,
        store: Store,
        paths: Paths,
        cgroups: Cgroups,
        driver: CgroupDriver,
    ) -> Result<Containers, RuntimeError> {
        let shim_name = if config.shim_path.is_empty() {
            "berth-shim"
        } else {
            config.shim_path.as_str()
        };
        let shim_bin = find_binary(shim_name)
            .ok_or_else(|| RuntimeError::ShimMissing(shim_name.to_owned()))?;
        let min_oom_score_adj = std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let rlimits =
            berth_spec::rlimits::parse_rlimits(&config.default_rlimits).map_err(|reason| {
                RuntimeError::Config {
                    key: "default_rlimits",
                    reason,
                }
            })?;
        let shims = Shims::new(shim_bin, paths.state.join("shims"));
        // kubelet lists containers every second: keep them decoded.
        store.cache(&CONTAINERS)?;
        let c = Containers {
            inner: Arc::new(Inner {
                config,
                store,
                paths,
                shims,
                cgroups,
                driver,
                min_oom_score_adj,
                rlimits,
                sealed: SealedRuntimes::default(),
                locks: Default::default(),
                counters: Default::default(),
                events: Default::default(),
            }),
        };
        // The default handler's copy now: a node that cannot make one
        // (vm.memfd_noexec = 2) fails at start, not at the first create,
        // and that create does not pay for the copy.
        if let Ok(rt) = c.runtime_for("") {
            c.inner.sealed.get(&rt.path)?;
        }
        Ok(c)
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The berth-shim binary (also the PID namespace holder).
    pub fn shim_bin(&self) -> &Path {
        self.inner.shims.bin()
    }

    pub(crate) fn lock_for(&self, id: &str) -> Arc<Mutex<()>> {
        let mut m = self.inner.locks.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(id.to_owned()).or_default().clone()
    }

    pub(crate) fn forget_lock(&self, id: &str) {
        let mut m = self.inner.locks.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(id);
    }

    /// Whether a handler ("" = the default) supports recursive read-only
    /// mounts: its runtime lists `rro` among its mount options. (The
    /// kernel needs mount_setattr too: the caller checks that.)
    pub fn handler_supports_rro(&self, handler: &str) -> bool {
        self.runtime_for(handler)
            .ok()
            .and_then(|rt| self.inner.sealed.features(&rt))
            .is_some_and(|f| {
                f["mountOptions"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|v| v == "rro"))
            })
    }

    /// Whether a handler ("" = the default) can run a pod's containers in
    /// the pod's user namespace: its runtime lists `user` among the
    /// namespaces of its `features`. That is all berth needs of it: the
    /// namespace exists (berth-pod) and the idmapped mounts are made by
    /// berthd (idmap.rs), so the runtime only joins it by path. A runtime
    /// that cannot tell (no `features`) is taken as unable.
    pub fn handler_supports_userns(&self, handler: &str) -> bool {
        self.runtime_for(handler)
            .ok()
            .and_then(|rt| self.inner.sealed.features(&rt))
            .is_some_and(|f| features_list_userns(&f))
    }

    /// The binary of a handler ("" = the default), if it can be found.
    pub fn handler_binary(&self, handler: &str) -> Result<PathBuf, RuntimeError> {
        self.runtime_for(handler).map(|r| r.path)
    }

    /// The proto's runtime description for a handler.
    pub(crate) fn runtime_for(&self, handler: &str) -> Result<proto::Runtime, RuntimeError> {
        let (name, h) = self
            .inner
            .config
            .handler(handler)
            .ok_or_else(|| RuntimeError::NoHandler(handler.to_owned()))?;
        let bin = if h.path.is_empty() {
            BUILTIN_RUNTIME
        } else {
            h.path.as_str()
        };
        let path = find_binary(bin).ok_or_else(|| RuntimeError::HandlerMissing {
            handler: name.to_owned(),
            binary: bin.to_owned(),
        })?;
        let root = if h.root.is_empty() {
            self.inner.paths.state.join("runtime").join(name)
        } else {
            PathBuf::from(&h.root)
        };
        Ok(proto::Runtime {
            path,
            root: Some(root),
            systemd_cgroup: self.inner.driver == CgroupDriver::Systemd,
            options: h.options.clone(),
        })
    }

    pub(crate) fn memory_cgroup(&self, cgroups_path: &str) -> Option<PathBuf> {
        match self.inner.driver {
            CgroupDriver::Cgroupfs => Some(self.inner.cgroups.memory_dir(cgroups_path)),
            // Scope paths are systemd's to choose; no OOM attribution.
            CgroupDriver::Systemd => None,
        }
    }

    /// A full id from a full id or a unique prefix.
    pub fn resolve_id(&self, id: &str) -> Result<Option<String>, RuntimeError> {
        if id.is_empty() {
            return Err(RuntimeError::IdRequired);
        }
        // A full id (what kubelet sends) is a cache hit.
        if self.inner.store.get_shared(&CONTAINERS, id)?.is_some() {
            return Ok(Some(id.to_owned()));
        }
        match self.inner.store.resolve_prefix(&CONTAINERS, id)? {
            Prefix::None => Ok(None),
            Prefix::One(full) => Ok(Some(full)),
            Prefix::Ambiguous => Err(RuntimeError::AmbiguousId(id.to_owned())),
        }
    }

    /// The record (from the store's cache: a copy, no decoding).
    pub(crate) fn get(&self, id: &str) -> Result<ContainerRecord, RuntimeError> {
        self.inner
            .store
            .get_shared(&CONTAINERS, id)?
            .map(|r| (*r).clone())
            .ok_or_else(|| RuntimeError::NotFound(id.to_owned()))
    }

    pub(crate) fn must_resolve(&self, id: &str) -> Result<String, RuntimeError> {
        self.resolve_id(id)?
            .ok_or_else(|| RuntimeError::NotFound(id.to_owned()))
    }

    pub fn status(&self, id: &str) -> Result<ContainerRecord, RuntimeError> {
        let id = self.must_resolve(id)?;
        self.get(&id)
    }

    /// ListContainers: from the store's cache, each config decoded once
    /// per record version.
    pub fn list(&self, f: &ContainerFilter) -> Result<Vec<Arc<ContainerRecord>>, RuntimeError> {
        Ok(self
            .inner
            .store
            .list_shared(&CONTAINERS)?
            .into_iter()
            .filter(|r| r.state != State::Creating)
            .filter(|r| f.id.as_ref().is_none_or(|id| r.id.starts_with(id.as_str())))
            .filter(|r| f.state.is_none_or(|s| r.state == s))
            .filter(|r| {
                f.pod_id
                    .as_ref()
                    .is_none_or(|p| r.pod_id.starts_with(p.as_str()))
            })
            .filter(|r| {
                if f.labels.is_empty() {
                    return true;
                }
                let cfg = r.config();
                f.labels.iter().all(|(k, v)| cfg.labels.get(k) == Some(v))
            })
            .collect())
    }

    /// Every container of a pod (any state).
    pub fn of_pod(&self, pod_id: &str) -> Result<Vec<Arc<ContainerRecord>>, RuntimeError> {
        Ok(self
            .inner
            .store
            .list_shared(&CONTAINERS)?
            .into_iter()
            .filter(|r| r.pod_id == pod_id)
            .collect())
    }

    /// Starts and exits since berthd started.
    pub fn counters(&self) -> &crate::counters::Counters {
        &self.inner.counters
    }

    /// Lifecycle events, for GetContainerEvents.
    pub fn events(&self) -> &crate::events::Events {
        &self.inner.events
    }

    /// A container's writable layer (its overlay upper dir).
    pub fn upper_dir(&self, id: &str) -> PathBuf {
        Layout::new(&self.inner.paths.containers, id).upper()
    }

    /// The directory holding every container's files (the filesystem
    /// writable layers are on).
    pub fn root(&self) -> &Path {
        &self.inner.paths.containers
    }

    /// Where a container's files are (for verbose status).
    pub fn bundle(&self, id: &str) -> PathBuf {
        Layout::new(&self.inner.paths.containers, id).bundle()
    }
}

/// A runtime's `features` document lists user namespaces.
fn features_list_userns(f: &serde_json::Value) -> bool {
    f.pointer("/linux/namespaces")
        .and_then(|n| n.as_array())
        .is_some_and(|n| n.iter().any(|v| v == "user"))
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Result<T, RuntimeError> {
    let bytes =
        std::fs::read(p).map_err(|e| RuntimeError::io(format!("reading {}", p.display()), e))?;
    serde_json::from_slice(&bytes).map_err(|e| RuntimeError::Corrupt {
        path: p.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_namespaces_are_read_from_features() {
        let runc_1_1 = serde_json::json!({
            "ociVersionMin": "1.0.0",
            "linux": {"namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"]}
        });
        assert!(features_list_userns(&runc_1_1));
        let without = serde_json::json!({"linux": {"namespaces": ["ipc", "mount", "pid"]}});
        assert!(!features_list_userns(&without));
        assert!(!features_list_userns(&serde_json::json!({})));
    }
}
