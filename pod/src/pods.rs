//! The pod sandbox lifecycle: RunPodSandbox sets up cgroup, namespaces,
//! /dev/shm, network and files in that order and unwinds all of it on any
//! failure; Stop tears the network and namespaces down (idempotent); Remove
//! deletes what remains and the record.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_process::sealed::SealedExe;
use berth_store::{Prefix, Store, Table};
use berth_util::id::new_id;
use berth_util::time::now_ns;
use tokio::sync::Mutex;

use crate::config::Config;
use crate::error::{NetworkError, PodError};
use crate::files;
use crate::kernel::{HostKernel, PodKernel};
use crate::ns::{self, NsRequest};
use crate::spec::{NsMode, SandboxRecord, SandboxSpec, SandboxState};
use berth_cgroups::{Cgroups, pod_cgroup_path};

pub const PODS: Table<SandboxRecord> = Table::new("pods");
/// Name reservation key (name, namespace, uid, attempt) → sandbox id.
pub const POD_NAMES: Table<String> = Table::new("pod_names");

/// What the network plugin needs to attach or detach a pod.
#[derive(Debug, Clone, Copy)]
pub struct NetRequest<'a> {
    pub id: &'a str,
    pub netns: &'a Path,
    pub spec: &'a SandboxSpec,
}

/// The pod network (berth-cri implements it with the CNI client).
pub trait PodNetwork: Send + Sync + 'static {
    /// Attaches the pod; returns its IPs (the first is the pod IP).
    fn setup(
        &self,
        req: NetRequest<'_>,
    ) -> impl Future<Output = Result<Vec<IpAddr>, NetworkError>> + Send;
    /// Detaches the pod; must succeed when it was never attached.
    fn teardown(
        &self,
        req: NetRequest<'_>,
    ) -> impl Future<Output = Result<(), NetworkError>> + Send;
}

/// Filter for [`Pods::list`].
#[derive(Debug, Clone, Default)]
pub struct PodFilter {
    pub id: Option<String>,
    pub state: Option<SandboxState>,
    pub labels: HashMap<String, String>,
}

/// Where a pod's things live.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Persistent: `<root>/pods/<id>/` (hostname, hosts, resolv.conf, shm).
    pub root: PathBuf,
    /// Runtime: `<state>/netns/<id>`, `<state>/pods/<id>/{ipc,uts}`.
    pub state: PathBuf,
}

#[derive(Debug)]
pub struct Pods<N> {
    config: Config,
    store: Store,
    cgroups: Cgroups,
    dirs: Dirs,
    network: N,
    /// The node's resolv.conf, for pods without DNS config.
    host_resolv: PathBuf,
    /// Namespaces, the PID-namespace holder, /dev/shm.
    kernel: Arc<dyn PodKernel>,
    locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Held from the host-port check to the new pod's record, so two
    /// pods asking for one port at once cannot both pass.
    claiming: std::sync::Mutex<()>,
}

impl<N: PodNetwork> Pods<N> {
    pub fn new(config: Config, store: Store, cgroups: Cgroups, dirs: Dirs, network: N) -> Self {
        Pods {
            config,
            store,
            cgroups,
            dirs,
            network,
            host_resolv: PathBuf::from("/etc/resolv.conf"),
            kernel: Arc::new(HostKernel::default()),
            locks: Default::default(),
            claiming: Default::default(),
        }
    }

    /// A sealed copy of the binary that holds shared PID namespaces
    /// (`berth-shim`). Without it, pods asking for pid = POD are refused.
    pub fn with_pid_holder(mut self, exe: Arc<SealedExe>) -> Self {
        self.kernel = Arc::new(HostKernel::new(Some(exe)));
        self
    }

    /// Runs pods on `kernel` instead of the host's (the unit tests' fake).
    pub fn with_kernel(mut self, kernel: Arc<dyn PodKernel>) -> Self {
        self.kernel = kernel;
        self
    }

    pub fn network(&self) -> &N {
        &self.network
    }

    fn lock_for(&self, id: &str) -> Arc<Mutex<()>> {
        let mut m = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(id.to_owned()).or_default().clone()
    }

    fn forget_lock(&self, id: &str) {
        let mut m = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if m.get(id).is_some_and(|l| Arc::strong_count(l) == 1) {
            m.remove(id);
        }
    }

    fn validate(&self, spec: &SandboxSpec) -> Result<(), PodError> {
        // Metadata, hostname and DNS config are checked at the API edge
        // (berth-cri's validate); here what needs this crate's config.
        let bad = |m: String| Err(PodError::InvalidArgument(m));
        let ns = spec.namespaces;
        // A pod-wide PID namespace (pid = POD) has no process until a
        // container starts; it is created with the pod's first container.
        if spec.userns.is_some() {
            crate::userns::check_namespaces(&ns).map_err(PodError::InvalidArgument)?;
        }
        for name in spec.sysctls.keys() {
            ns::check_sysctl(name, ns.network != NsMode::Node, ns.ipc != NsMode::Node)
                .map_err(PodError::InvalidArgument)?;
        }
        for p in &spec.port_mappings {
            if p.container_port == 0 {
                return bad("port mapping with container_port 0".into());
            }
        }
        pod_cgroup_path(
            self.config.cgroup_driver,
            &spec.cgroup_parent,
            self.config.default_parent(),
            "x",
        )
        .map_err(PodError::InvalidArgument)?;
        Ok(())
    }

    fn record_for(&self, id: &str, spec: SandboxSpec) -> Result<SandboxRecord, PodError> {
        let ns = spec.namespaces;
        let own_net = ns.network != NsMode::Node;
        let state_pod = self.dirs.state.join("pods").join(id);
        let files_dir = self.dirs.root.join("pods").join(id);
        let cgroup = pod_cgroup_path(
            self.config.cgroup_driver,
            &spec.cgroup_parent,
            self.config.default_parent(),
            id,
        )
        .map_err(PodError::InvalidArgument)?;
        Ok(SandboxRecord {
            id: id.to_owned(),
            state: SandboxState::Creating,
            created_at: now_ns(),
            netns: own_net.then(|| self.dirs.state.join("netns").join(id)),
            ipcns: (ns.ipc != NsMode::Node).then(|| state_pod.join("ipc")),
            // The UTS namespace follows the network one, as in Kubernetes.
            utsns: own_net.then(|| state_pod.join("uts")),
            userns: spec.userns.is_some().then(|| state_pod.join("user")),
            cgroup,
            ips: Vec::new(),
            shm: (ns.ipc != NsMode::Node).then(|| files_dir.join("shm")),
            pid_holder: None,
            incomplete: false,
            files_dir,
            spec,
        })
    }

    /// RunPodSandbox. Returns the new sandbox id.
    pub async fn run(&self, spec: SandboxSpec) -> Result<String, PodError> {
        self.validate(&spec)?;
        let id = new_id();
        let key = spec.metadata.reservation_key();
        let mut rec = self.record_for(&id, spec)?;
        let claiming = self.claiming.lock().unwrap_or_else(|p| p.into_inner());
        if !rec.spec.port_mappings.is_empty() {
            let pods = self.store.list_shared(&PODS)?;
            if let Some(m) = crate::hostports::conflict(&rec.spec, pods.iter().map(|p| p.as_ref()))
            {
                return Err(PodError::PortInUse(m));
            }
        }
        self.store.write(|tx| {
            if let Some(existing) = tx.get(&POD_NAMES, &key)? {
                return Err(PodError::AlreadyExists {
                    name: key.clone(),
                    id: existing,
                });
            }
            tx.put(&POD_NAMES, &key, &id)?;
            tx.put(&PODS, &id, &rec)?;
            Ok(())
        })?;
        drop(claiming);
        let lock = self.lock_for(&id);
        let _g = lock.lock().await;
        match self.setup(&mut rec).await {
            Ok(()) => {
                rec.state = SandboxState::Ready;
                self.store.put(&PODS, &id, &rec)?;
                tracing::info!(pod_id = %id, pod = %rec.spec.metadata.name, namespace = %rec.spec.metadata.namespace, ips = ?rec.ips, "pod sandbox ready");
                Ok(id)
            }
            Err(e) => {
                tracing::warn!(pod_id = %id, error = %e, "pod sandbox setup failed; unwinding");
                match self.teardown_all(&rec).await {
                    Ok(()) => self.store.write(|tx| {
                        tx.delete(&PODS, &id)?;
                        tx.delete(&POD_NAMES, &key)?;
                        Ok::<(), PodError>(())
                    })?,
                    // What could not be undone stays recorded: the sandbox is
                    // listed NotReady, and RemovePodSandbox (or the next
                    // start) tries again.
                    Err(_) => {
                        rec.state = SandboxState::NotReady;
                        rec.incomplete = true;
                        self.store.put(&PODS, &id, &rec)?;
                    }
                }
                Err(e)
            }
        }
    }

    async fn setup(&self, rec: &mut SandboxRecord) -> Result<(), PodError> {
        let cg = rec.cgroup.clone();
        self.cgroups
            .create(&cg)
            .map_err(|source| PodError::Cgroup {
                path: cg.clone(),
                source,
            })?;
        let hostname = if rec.spec.hostname.is_empty() {
            rec.spec.metadata.name.chars().take(63).collect()
        } else {
            rec.spec.hostname.clone()
        };
        let req = NsRequest {
            net: rec.netns.clone(),
            ipc: rec.ipcns.clone(),
            uts: rec.utsns.clone(),
            user: rec.userns.clone().zip(rec.spec.userns),
            hostname: rec.utsns.as_ref().map(|_| hostname.clone()),
            sysctls: rec
                .spec
                .sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let kernel = self.kernel.clone();
        tokio::task::spawn_blocking(move || kernel.create_namespaces(&req))
            .await
            .map_err(|_| PodError::Namespaces(ns::NsError::Thread))??;
        if rec.spec.namespaces.pid == NsMode::Pod {
            if !self.kernel.holds_pid_namespaces() {
                return Err(PodError::InvalidArgument(
                    "a shared PID namespace needs berth-shim, which was not found".into(),
                ));
            }
            let id = rec.id.clone();
            let join: Vec<PathBuf> = [&rec.netns, &rec.ipcns, &rec.utsns]
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            let kernel = self.kernel.clone();
            let user = rec.userns.clone();
            let pid = tokio::task::spawn_blocking(move || {
                kernel.spawn_holder(&id, user.as_deref(), &join)
            })
            .await
            .map_err(|_| PodError::Namespaces(ns::NsError::Thread))?
            .map_err(|e| PodError::Namespaces(ns::NsError::PidHolder(e)))?;
            rec.pid_holder = Some(pid);
            self.cgroups
                .add_process(&cg, pid)
                .map_err(|source| PodError::Cgroup {
                    path: cg.clone(),
                    source,
                })?;
        }
        std::fs::create_dir_all(&rec.files_dir).map_err(PodError::Files)?;
        // In a user namespace of the pod's own, what berth makes for the
        // pod is its root's, as the pod sees it.
        let owner = rec.spec.userns.map(|u| u.root());
        if let Some(shm) = &rec.shm {
            self.kernel
                .mount_shm(shm, self.config.shm_size_mib, owner)
                .map_err(PodError::Files)?;
        }
        if let Some(netns) = rec.netns.clone() {
            let ips = self
                .network
                .setup(NetRequest {
                    id: &rec.id,
                    netns: &netns,
                    spec: &rec.spec,
                })
                .await
                .map_err(PodError::Network)?;
            rec.ips = ips;
        }
        let host_resolv = std::fs::read_to_string(&self.host_resolv).unwrap_or_default();
        let write = |name: &str, text: String| {
            let path = rec.files_dir.join(name);
            std::fs::write(&path, text).map_err(PodError::Files)?;
            if let Some(owner) = owner {
                self.kernel.own(&path, owner).map_err(PodError::Files)?;
            }
            Ok::<(), PodError>(())
        };
        write("hostname", format!("{hostname}\n"))?;
        write("hosts", files::hosts(&hostname, &rec.ips))?;
        write(
            "resolv.conf",
            files::resolv_conf(rec.spec.dns.as_ref(), &host_resolv),
        )?;
        Ok(())
    }

    /// Network and namespaces: what StopPodSandbox releases.
    async fn stop_parts(&self, rec: &SandboxRecord) -> Result<(), PodError> {
        if rec.spec.namespaces.pid == NsMode::Pod {
            let (id, pid, kernel) = (rec.id.clone(), rec.pid_holder, self.kernel.clone());
            let _ = tokio::task::spawn_blocking(move || kernel.stop_holders(&id, pid)).await;
        }
        if let Some(netns) = &rec.netns {
            self.network
                .teardown(NetRequest {
                    id: &rec.id,
                    netns,
                    spec: &rec.spec,
                })
                .await
                .map_err(PodError::Network)?;
        }
        // The user namespace last: it owns the others.
        for p in [&rec.netns, &rec.ipcns, &rec.utsns, &rec.userns]
            .into_iter()
            .flatten()
        {
            self.kernel.unpin_namespace(p).map_err(|e| {
                PodError::Namespaces(ns::NsError::Pin {
                    path: p.clone(),
                    source: e,
                })
            })?;
        }
        self.remove_state_dir(&rec.id)
    }

    /// Namespace pins and state directories no record names (a crash
    /// between making them and recording the sandbox, or an unwind that
    /// could not finish): unpinned and removed.
    fn sweep_unowned(&self) -> Result<(), PodError> {
        let owned = |id: &str| -> Result<bool, PodError> {
            Ok(self.store.get_shared(&PODS, id)?.is_some())
        };
        let netns = self.dirs.state.join("netns");
        for e in std::fs::read_dir(&netns).into_iter().flatten().flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if !owned(&id)? {
                tracing::warn!(pod_id = %id, "unpinning a network namespace no sandbox owns");
                if let Err(err) = self.kernel.unpin_namespace(&e.path()) {
                    tracing::warn!(pod_id = %id, error = %err, "unpinning an unowned network namespace");
                }
            }
        }
        let pods = self.dirs.state.join("pods");
        for e in std::fs::read_dir(&pods).into_iter().flatten().flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if owned(&id)? {
                continue;
            }
            tracing::warn!(pod_id = %id, "removing a sandbox state directory no sandbox owns");
            for pin in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
                let _ = self.kernel.unpin_namespace(&pin.path());
            }
            if let Err(err) = self.remove_state_dir(&id) {
                tracing::warn!(pod_id = %id, error = %err, "removing an unowned sandbox state directory");
            }
        }
        Ok(())
    }

    /// `<state>/pods/<id>` (where the IPC and UTS namespaces are pinned):
    /// empty once they are unpinned.
    fn remove_state_dir(&self, id: &str) -> Result<(), PodError> {
        let dir = self.dirs.state.join("pods").join(id);
        match std::fs::remove_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(PodError::Files(e)),
            _ => Ok(()),
        }
    }

    /// Everything else: what RemovePodSandbox deletes.
    fn remove_parts(&self, rec: &SandboxRecord) -> Result<(), PodError> {
        if let Some(shm) = &rec.shm {
            self.kernel.unmount_shm(shm).map_err(PodError::Files)?;
        }
        match std::fs::remove_dir_all(&rec.files_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(PodError::Files(e)),
            _ => {}
        }
        self.cgroups
            .remove(&rec.cgroup)
            .map_err(|source| PodError::Cgroup {
                path: rec.cgroup.clone(),
                source,
            })
    }

    /// For unwinding: every step runs even if one fails; Ok only when
    /// everything went (a record is forgotten only then).
    async fn teardown_all(&self, rec: &SandboxRecord) -> Result<(), PodError> {
        let stopped = self.stop_parts(rec).await;
        if let Err(e) = &stopped {
            tracing::warn!(pod_id = %rec.id, error = %e, "unwinding: stopping");
            // Namespaces must go even if the network teardown failed.
            for p in [&rec.netns, &rec.ipcns, &rec.utsns, &rec.userns]
                .into_iter()
                .flatten()
            {
                let _ = self.kernel.unpin_namespace(p);
            }
            let _ = self.remove_state_dir(&rec.id);
        }
        let removed = self.remove_parts(rec);
        if let Err(e) = &removed {
            tracing::warn!(pod_id = %rec.id, error = %e, "unwinding: removing");
        }
        stopped.and(removed)
    }

    /// StopPodSandbox: idempotent; an unknown id is fine.
    pub async fn stop(&self, id: &str) -> Result<(), PodError> {
        let Some(full) = self.resolve_id(id)? else {
            return Ok(());
        };
        let lock = self.lock_for(&full);
        let _g = lock.lock().await;
        let Some(mut rec) = self.store.get(&PODS, &full)? else {
            return Ok(());
        };
        // NotReady is recorded after a complete stop (nothing to redo), or
        // after an unwind that left something (`incomplete`: all again).
        if rec.state == SandboxState::NotReady && !rec.incomplete {
            return Ok(());
        }
        self.stop_parts(&rec).await?;
        rec.state = SandboxState::NotReady;
        rec.incomplete = false;
        self.store.put(&PODS, &full, &rec)?;
        tracing::info!(pod_id = %full, "pod sandbox stopped");
        Ok(())
    }

    /// RemovePodSandbox: stops first; an unknown id is fine.
    pub async fn remove(&self, id: &str) -> Result<(), PodError> {
        let Some(full) = self.resolve_id(id)? else {
            return Ok(());
        };
        self.stop(&full).await?;
        let lock = self.lock_for(&full);
        let guard = lock.lock().await;
        let Some(rec) = self.store.get(&PODS, &full)? else {
            return Ok(());
        };
        self.remove_parts(&rec)?;
        let key = rec.spec.metadata.reservation_key();
        self.store.write(|tx| {
            tx.delete(&PODS, &full)?;
            if tx.get(&POD_NAMES, &key)?.as_deref() == Some(full.as_str()) {
                tx.delete(&POD_NAMES, &key)?;
            }
            Ok::<(), PodError>(())
        })?;
        drop(guard);
        self.forget_lock(&full);
        tracing::info!(pod_id = %full, "pod sandbox removed");
        Ok(())
    }

    /// A full id from a full id or a unique prefix.
    pub fn resolve_id(&self, id: &str) -> Result<Option<String>, PodError> {
        if id.is_empty() {
            return Err(PodError::InvalidArgument(
                "pod_sandbox_id is required".into(),
            ));
        }
        match self.store.resolve_prefix(&PODS, id)? {
            Prefix::None => Ok(None),
            Prefix::One(full) => Ok(Some(full)),
            Prefix::Ambiguous => Err(PodError::InvalidArgument(format!(
                "pod sandbox id prefix {id:?} matches more than one sandbox"
            ))),
        }
    }

    pub fn status(&self, id: &str) -> Result<SandboxRecord, PodError> {
        let full = self
            .resolve_id(id)?
            .ok_or_else(|| PodError::NotFound(id.to_owned()))?;
        self.store
            .get(&PODS, &full)?
            .ok_or_else(|| PodError::NotFound(id.to_owned()))
    }

    pub fn list(&self, filter: &PodFilter) -> Result<Vec<Arc<SandboxRecord>>, PodError> {
        Ok(self
            .store
            .list_shared(&PODS)?
            .into_iter()
            .filter(|r| r.state != SandboxState::Creating)
            .filter(|r| {
                filter
                    .id
                    .as_ref()
                    .is_none_or(|id| r.id.starts_with(id.as_str()))
            })
            .filter(|r| filter.state.is_none_or(|s| r.state == s))
            .filter(|r| {
                filter
                    .labels
                    .iter()
                    .all(|(k, v)| r.spec.labels.get(k) == Some(v))
            })
            .collect())
    }

    /// At daemon start: finishes what a crash interrupted. Sandboxes caught
    /// while being created are unwound and forgotten; ready ones whose
    /// namespaces vanished (a reboot empties the state dir) become NotReady.
    /// From then on the sandboxes are kept decoded in memory (kubelet
    /// lists them every second).
    pub async fn recover(&self) -> Result<(), PodError> {
        self.store.cache(&PODS)?;
        self.sweep_unowned()?;
        for (id, mut rec) in self.store.list(&PODS)? {
            match rec.state {
                SandboxState::Creating => {
                    tracing::warn!(pod_id = %id, "unwinding a sandbox interrupted while being created");
                    if let Err(e) = self.teardown_all(&rec).await {
                        // Kept, listed NotReady: RemovePodSandbox or the
                        // next start tries again. Never forgotten half-done.
                        tracing::warn!(pod_id = %id, error = %e, "an interrupted sandbox could not be undone yet; kept as NotReady");
                        rec.state = SandboxState::NotReady;
                        rec.incomplete = true;
                        self.store.put(&PODS, &id, &rec)?;
                        continue;
                    }
                    let key = rec.spec.metadata.reservation_key();
                    self.store.write(|tx| {
                        tx.delete(&PODS, &id)?;
                        tx.delete(&POD_NAMES, &key)?;
                        Ok::<(), PodError>(())
                    })?;
                }
                SandboxState::Ready if rec.netns.as_ref().is_some_and(|p| !p.exists()) => {
                    tracing::warn!(pod_id = %id, "network namespace gone (reboot?); sandbox not ready");
                    let _ = self.stop_parts(&rec).await;
                    rec.state = SandboxState::NotReady;
                    self.store.put(&PODS, &id, &rec)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "pods_tests.rs"]
mod tests;
