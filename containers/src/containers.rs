//! The container lifecycle: CreateContainer mounts the rootfs, writes the
//! OCI bundle and asks the pod's shim to create it; Start/Stop/Remove go
//! through the shim; exits come back from the shim (a watcher per running
//! container, and the shim's exit records after a berthd restart).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_cgroups::{CgroupDriver, Cgroups};
use berth_shim::proto::{self, Request, Response};
use berth_spec::SpecInput;
use berth_store::{Prefix, Store};
use berth_util::id::new_id;
use berth_util::time::now_ns;
use k8s_cri::v1::{ContainerConfig, LinuxContainerResources, PodSandboxConfig};
use tokio::sync::Mutex;

use crate::config::{Config, find_binary};
use crate::error::RuntimeError;
use crate::record::{
    CONTAINER_NAMES, CONTAINER_REMOVALS, CONTAINERS, ContainerRecord, ImageRef, State,
    reservation_key,
};
use crate::rootfs::{self, Layout};
use crate::sealed::{BUILTIN_RUNTIME, SealedRuntimes};
use crate::shim::Shims;

/// How long the runtime may take to stop a container after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(30);

/// The image a new container runs, resolved by the caller.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub image: ImageRef,
    /// Overlay lower dirs, topmost first.
    pub lowers: Vec<PathBuf>,
    pub config: oci_spec::image::ImageConfiguration,
}

/// What the container code knows of the pod a container joins, built by
/// berthd from the pod's record: the container code depends on no pod
/// internals.
#[derive(Debug, Clone)]
pub struct SandboxView {
    pub id: String,
    /// Only a ready pod gets new containers.
    pub ready: bool,
    /// Its RuntimeClass handler ("" = the default).
    pub runtime_handler: String,
    /// kubelet's log directory for the pod (absolute), under which
    /// container log paths are resolved.
    pub log_directory: String,
    /// The pod's cgroup, relative to the hierarchy root, as the driver
    /// named it; containers' cgroups go below it.
    pub cgroup: String,
    /// The namespaces and files the pod's containers join.
    pub join: berth_spec::Sandbox,
}

#[derive(Debug)]
pub struct CreateRequest<'a> {
    pub pod: &'a SandboxView,
    pub config: ContainerConfig,
    pub sandbox_config: PodSandboxConfig,
    pub image: ImageInfo,
}

/// Filter for [`Containers::list`].
#[derive(Debug, Clone, Default)]
pub struct ContainerFilter {
    pub id: Option<String>,
    pub state: Option<State>,
    pub pod_id: Option<String>,
    pub labels: HashMap<String, String>,
}

/// What ExecSync returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Where containers live and how they are run.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `<root>/containers`
    pub containers: PathBuf,
    /// `<state>`: shims under `shims/`, runtime roots under `runtime/`.
    pub state: PathBuf,
}

/// A removed container whose runtime state and files are being deleted in
/// the background; see [`Containers::remove`].
#[derive(Debug)]
pub struct Removal {
    /// The record as it was removed.
    pub record: ContainerRecord,
    done: tokio::task::JoinHandle<Result<(), RuntimeError>>,
}

impl Removal {
    /// Waits until the container's runtime state and files are deleted.
    pub async fn finished(self) -> Result<ContainerRecord, RuntimeError> {
        self.done
            .await
            .map_err(|e| RuntimeError::Runtime(format!("removal task: {e}")))??;
        Ok(self.record)
    }
}

#[derive(Debug, Clone)]
pub struct Containers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    store: Store,
    paths: Paths,
    shims: Shims,
    cgroups: Cgroups,
    driver: CgroupDriver,
    /// berthd's own oom_score_adj: containers never go below it.
    min_oom_score_adj: i32,
    /// `[runtime] default_rlimits`, parsed.
    rlimits: Vec<oci_spec::runtime::PosixRlimit>,
    /// The sealed copies every runtime call runs from.
    sealed: SealedRuntimes,
    locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
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
        let shim_bin = find_binary(shim_name).ok_or_else(|| RuntimeError::Shim {
            pod_id: String::new(),
            message: format!("shim binary {shim_name:?} not found (next to berthd or in $PATH)"),
        })?;
        let min_oom_score_adj = std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let rlimits = berth_spec::rlimits::parse_rlimits(&config.default_rlimits)
            .map_err(RuntimeError::InvalidArgument)?;
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

    fn lock_for(&self, id: &str) -> Arc<Mutex<()>> {
        let mut m = self.inner.locks.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(id.to_owned()).or_default().clone()
    }

    fn forget_lock(&self, id: &str) {
        let mut m = self.inner.locks.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(id);
    }

    /// The binary of a handler ("" = the default), if it can be found.
    pub fn handler_binary(&self, handler: &str) -> Result<PathBuf, RuntimeError> {
        self.runtime_for(handler).map(|r| r.path)
    }

    /// The proto's runtime description for a handler.
    fn runtime_for(&self, handler: &str) -> Result<proto::Runtime, RuntimeError> {
        let (name, h) = self.inner.config.handler(handler).ok_or_else(|| {
            RuntimeError::InvalidArgument(format!("no runtime handler {handler:?} configured"))
        })?;
        let bin = if h.path.is_empty() {
            BUILTIN_RUNTIME
        } else {
            h.path.as_str()
        };
        let path = find_binary(bin).ok_or_else(|| {
            RuntimeError::Runtime(format!(
                "runtime handler {name:?}: binary {bin:?} not found (next to berthd or in $PATH)"
            ))
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

    fn memory_cgroup(&self, cgroups_path: &str) -> Option<PathBuf> {
        match self.inner.driver {
            CgroupDriver::Cgroupfs => Some(self.inner.cgroups.memory_dir(cgroups_path)),
            // Scope paths are systemd's to choose; no OOM attribution.
            CgroupDriver::Systemd => None,
        }
    }

    /// CreateContainer. Any failure unwinds what was done.
    pub async fn create(&self, req: CreateRequest<'_>) -> Result<String, RuntimeError> {
        let pod = req.pod;
        let meta = req
            .config
            .metadata
            .clone()
            .filter(|m| !m.name.is_empty())
            .ok_or_else(|| {
                RuntimeError::InvalidArgument("container metadata.name is required".into())
            })?;
        if !pod.ready {
            return Err(RuntimeError::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                pod.id
            )));
        }
        let runtime = self.runtime_for(&pod.runtime_handler)?;
        let handler = self
            .inner
            .config
            .handler(&pod.runtime_handler)
            .map(|(n, _)| n.to_owned())
            .unwrap_or_default();
        let log_path = resolve_log_path(&pod.log_directory, &req.config.log_path)?;
        let stop_signal = berth_spec::stop_signal(&req.image.config)?;
        let id = new_id();
        let key = reservation_key(&meta.name, meta.attempt, &pod.id);
        let cgroups_path =
            berth_cgroups::container_cgroup_path(self.inner.driver, &pod.cgroup, &id);
        let mut rec = ContainerRecord {
            id: id.clone(),
            pod_id: pod.id.clone(),
            state: State::Creating,
            config: String::new(),
            decoded: Default::default(),
            image: req.image.image.clone(),
            log_path: log_path.clone(),
            handler,
            cgroups_path: cgroups_path.clone(),
            stop_signal,
            pid: 0,
            created_at: now_ns(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            user: None,
            released: false,
        };
        rec.set_config(&req.config);
        // The rootfs is mounted while the reservation commits. The
        // reservation is not synced: the durable record after the runtime's
        // create takes it to disk (a failed create forgets it durably). A
        // crash before that loses it; recover() then deletes what a shim
        // holds under no record and sweeps the directory no record names.
        let layout = Layout::new(&self.inner.paths.containers, &id);
        let mounting = {
            let (l, lowers) = (layout.clone(), req.image.lowers.clone());
            tokio::task::spawn_blocking(move || rootfs::mount_rootfs(&l, &lowers))
        };
        let reserved = self.inner.store.write_unsynced(|tx| {
            if let Some(other) = tx.get(&CONTAINER_NAMES, &key)? {
                return Err(RuntimeError::AlreadyExists {
                    name: meta.name.clone(),
                    id: other,
                });
            }
            tx.put(&CONTAINER_NAMES, &key, &id)?;
            tx.put(&CONTAINERS, &id, &rec)?;
            Ok(())
        });
        let mounted = match mounting.await {
            Ok(r) => r.map_err(|e| RuntimeError::io("container rootfs", e)),
            Err(e) => Err(RuntimeError::Runtime(e.to_string())),
        };
        if let Err(e) = reserved {
            if let Err(re) = tokio::task::spawn_blocking(move || rootfs::remove(&layout))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
            {
                tracing::warn!(container_id = %id, error = %re, "removing the rootfs of a refused create");
            }
            return Err(e);
        }
        let lock = self.lock_for(&id);
        let _g = lock.lock().await;
        let parts = match mounted {
            Ok(()) => self.create_parts(&req, &rec, runtime, log_path).await,
            Err(e) => Err(e),
        };
        match parts {
            Ok((pid, user)) => {
                rec.state = State::Created;
                rec.pid = pid;
                rec.user = Some(user);
                self.inner.store.put(&CONTAINERS, &id, &rec)?;
                tracing::info!(container_id = %id, pod_id = %pod.id, name = %meta.name, "container created");
                Ok(id)
            }
            Err(e) => {
                tracing::warn!(container_id = %id, pod_id = %pod.id, error = %e, "container create failed; unwinding");
                self.unwind(&rec).await;
                self.forget(&rec)?;
                drop(_g);
                self.forget_lock(&id);
                Err(e)
            }
        }
    }

    async fn create_parts(
        &self,
        req: &CreateRequest<'_>,
        rec: &ContainerRecord,
        runtime: proto::Runtime,
        log_path: Option<PathBuf>,
    ) -> Result<(u32, crate::record::User), RuntimeError> {
        let layout = Layout::new(&self.inner.paths.containers, &rec.id);
        let pod = req.pod;
        let rootfs_path = layout.rootfs();
        let spec = berth_spec::generate(&SpecInput {
            id: &rec.id,
            config: &req.config,
            sandbox_config: &req.sandbox_config,
            image: &req.image.config,
            rootfs: &rootfs_path,
            sandbox: &pod.join,
            cgroups_path: rec.cgroups_path.clone(),
            min_oom_score_adj: self.inner.min_oom_score_adj,
            rlimits: &self.inner.rlimits,
        })?;
        let user = spec
            .process()
            .as_ref()
            .map(|p| crate::record::User {
                uid: p.user().uid(),
                gid: p.user().gid(),
                additional_gids: p.user().additional_gids().clone().unwrap_or_default(),
            })
            .unwrap_or(crate::record::User {
                uid: 0,
                gid: 0,
                additional_gids: Vec::new(),
            });
        let bundle = layout.bundle();
        let json = serde_json::to_vec(&spec)
            .map_err(|e| RuntimeError::Runtime(format!("serializing the OCI spec: {e}")))?;
        std::fs::write(bundle.join("config.json"), json)
            .map_err(|e| RuntimeError::io("writing config.json", e))?;
        // The pod's shim, when this starts it, runs the runtime from it.
        let sealed = self.inner.sealed.get(&runtime.path)?;
        let created = self
            .inner
            .shims
            .call_or_start(
                &pod.id,
                &sealed,
                &Request::Create(proto::Create {
                    id: rec.id.clone(),
                    bundle,
                    runtime,
                    log_path,
                    stdin: req.config.stdin,
                    tty: req.config.tty,
                    memory_cgroup: self.memory_cgroup(&rec.cgroups_path),
                }),
                Some(Duration::from_secs(120)),
            )
            .await?;
        match created {
            Response::Created { pid } => Ok((pid, user)),
            other => Err(RuntimeError::Runtime(format!(
                "unexpected shim answer {other:?}"
            ))),
        }
    }

    /// Deletes the container's runtime state through its shim, which then
    /// forgets it. When the shim is gone (killed), the runtime is run
    /// directly with `delete --force`: that also kills the container's
    /// processes, which outlived their shim.
    async fn delete_runtime_state(&self, rec: &ContainerRecord) -> Result<(), RuntimeError> {
        let req = Request::Delete { id: rec.id.clone() };
        match self
            .inner
            .shims
            .call_if_up(&rec.pod_id, &req, Some(KILL_WAIT))
            .await?
        {
            Some(_) => Ok(()),
            None => self.delete_without_shim(rec).await,
        }
    }

    /// `<runtime> delete --force <id>`, run by berthd itself.
    async fn delete_without_shim(&self, rec: &ContainerRecord) -> Result<(), RuntimeError> {
        tracing::warn!(container_id = %rec.id, pod_id = %rec.pod_id, "the pod's shim is gone: deleting the container through the runtime directly");
        let rt = self.runtime_for(&rec.handler)?;
        let log = Layout::new(&self.inner.paths.containers, &rec.id)
            .bundle()
            .join("runtime.log");
        let mut cmd = self.inner.sealed.command(&rt)?;
        cmd.arg("--log")
            .arg(&log)
            .arg("--log-format")
            .arg("json")
            .args(["delete", "--force", rec.id.as_str()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .map_err(|_| {
                RuntimeError::Runtime(format!("{} delete: no exit within 30s", rt.path.display()))
            })?
            .map_err(|e| RuntimeError::Runtime(format!("running {}: {e}", rt.path.display())))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(RuntimeError::Runtime(format!(
                "{} delete --force {}: {}: {}",
                rt.path.display(),
                rec.id,
                out.status,
                err.trim()
            )));
        }
        Ok(())
    }

    /// Undoes a partial create: runtime state, rootfs, dirs.
    async fn unwind(&self, rec: &ContainerRecord) {
        if let Err(e) = self.delete_runtime_state(rec).await {
            tracing::warn!(container_id = %rec.id, error = %e, "unwinding: runtime delete");
        }
        let layout = Layout::new(&self.inner.paths.containers, &rec.id);
        if let Err(e) = tokio::task::spawn_blocking(move || rootfs::remove(&layout))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
        {
            tracing::warn!(container_id = %rec.id, error = %e, "unwinding: removing rootfs");
        }
    }

    /// Deletes the record and, when it still names this container, its
    /// name reservation, in one transaction.
    fn forget(&self, rec: &ContainerRecord) -> Result<(), RuntimeError> {
        let key = rec.reservation_key();
        self.inner.store.write(|tx| {
            tx.delete(&CONTAINERS, &rec.id)?;
            if tx.get(&CONTAINER_NAMES, &key)?.as_deref() == Some(rec.id.as_str()) {
                tx.delete(&CONTAINER_NAMES, &key)?;
            }
            Ok::<(), RuntimeError>(())
        })
    }

    /// A full id from a full id or a unique prefix.
    pub fn resolve_id(&self, id: &str) -> Result<Option<String>, RuntimeError> {
        if id.is_empty() {
            return Err(RuntimeError::InvalidArgument(
                "container_id is required".into(),
            ));
        }
        // A full id (what kubelet sends) is a cache hit.
        if self.inner.store.get_shared(&CONTAINERS, id)?.is_some() {
            return Ok(Some(id.to_owned()));
        }
        match self.inner.store.resolve_prefix(&CONTAINERS, id)? {
            Prefix::None => Ok(None),
            Prefix::One(full) => Ok(Some(full)),
            Prefix::Ambiguous => Err(RuntimeError::InvalidArgument(format!(
                "container id prefix {id:?} matches more than one container"
            ))),
        }
    }

    /// The record (from the store's cache: a copy, no decoding).
    fn get(&self, id: &str) -> Result<ContainerRecord, RuntimeError> {
        self.inner
            .store
            .get_shared(&CONTAINERS, id)?
            .map(|r| (*r).clone())
            .ok_or_else(|| RuntimeError::NotFound(id.to_owned()))
    }

    fn must_resolve(&self, id: &str) -> Result<String, RuntimeError> {
        self.resolve_id(id)?
            .ok_or_else(|| RuntimeError::NotFound(id.to_owned()))
    }

    /// StartContainer.
    pub async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let id = self.must_resolve(id)?;
        let lock = self.lock_for(&id);
        let _g = lock.lock().await;
        let mut rec = self.get(&id)?;
        if rec.state != State::Created {
            return Err(RuntimeError::FailedPrecondition(format!(
                "container {id} is {:?}, not created",
                rec.state
            )));
        }
        // Taken before the call: a process may exit before start returns.
        let started_at = now_ns();
        let started = self
            .inner
            .shims
            .call(
                &rec.pod_id,
                &Request::Start { id: id.clone() },
                Some(Duration::from_secs(120)),
            )
            .await;
        match started {
            Ok(_) => {
                rec.state = State::Running;
                rec.started_at = started_at;
                self.inner.store.put(&CONTAINERS, &id, &rec)?;
                self.watch(rec.pod_id.clone(), id.clone());
                tracing::info!(container_id = %id, "container started");
                Ok(())
            }
            Err(e) => {
                // The container is dead on arrival; say why in its status.
                let _ = self
                    .inner
                    .shims
                    .call(
                        &rec.pod_id,
                        &Request::Kill {
                            id: id.clone(),
                            signal: 9,
                        },
                        Some(KILL_WAIT),
                    )
                    .await;
                rec.state = State::Exited;
                rec.finished_at = now_ns();
                rec.exit_code = 128;
                rec.reason = "StartError".into();
                rec.message = e.to_string();
                self.inner.store.put(&CONTAINERS, &id, &rec)?;
                Err(e)
            }
        }
    }

    /// Learns of the container's exit from its shim, in the background.
    fn watch(&self, pod_id: String, id: String) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let r = this
                    .inner
                    .shims
                    .call(&pod_id, &Request::Wait { id: id.clone() }, None)
                    .await;
                match r {
                    Ok(Response::Exited(exit)) => {
                        let _ = this.record_exit(&id, Some(exit)).await;
                        return;
                    }
                    Err(RuntimeError::NotFound(_)) => {
                        // Deleted meanwhile (remove races the watcher).
                        return;
                    }
                    _ if this.inner.shims.alive(&pod_id).await => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    _ => {
                        let exit = this.inner.shims.exit_record(&pod_id, &id);
                        let _ = this.record_exit(&id, exit).await;
                        return;
                    }
                }
            }
        });
    }

    /// Records how a container ended (once; later calls are no-ops).
    /// None: its shim is gone and left no record.
    async fn record_exit(&self, id: &str, exit: Option<proto::Exit>) -> Result<(), RuntimeError> {
        let lock = self.lock_for(id);
        let _g = lock.lock().await;
        let Some(mut rec) = self.inner.store.get(&CONTAINERS, id)? else {
            return Ok(());
        };
        if !matches!(rec.state, State::Created | State::Running) {
            return Ok(());
        }
        apply_exit(&mut rec, exit);
        self.inner.store.put(&CONTAINERS, id, &rec)?;
        tracing::info!(container_id = %id, exit_code = rec.exit_code, reason = %rec.reason, "container exited");
        self.release_runtime(&mut rec).await
    }

    /// After the exit: deletes the runtime's state (through the shim, which
    /// then forgets the container) and unmounts the rootfs, so the work is
    /// off RemoveContainer's path. Caller holds the lock. Failures are
    /// logged and left to RemoveContainer.
    async fn release_runtime(&self, rec: &mut ContainerRecord) -> Result<(), RuntimeError> {
        if rec.released || matches!(rec.state, State::Created | State::Running | State::Creating) {
            return Ok(());
        }
        if let Err(e) = self.delete_runtime_state(rec).await {
            tracing::debug!(container_id = %rec.id, error = %e, "runtime delete after exit; left to remove");
            return Ok(());
        }
        if let Err(e) = rootfs::unmount(&Layout::new(&self.inner.paths.containers, &rec.id)) {
            tracing::debug!(container_id = %rec.id, error = %e, "unmounting rootfs after exit");
            return Ok(());
        }
        rec.released = true;
        // RemoveContainer does not wait for this release: the record may
        // have moved to the removals table meanwhile, and must not come
        // back. Not synced (it would hold the store's writer through an
        // fsync while the StopContainer's caller goes on): a lost
        // `released` only makes the removal delete the runtime state and
        // unmount again, both idempotent.
        self.inner.store.write_unsynced(|tx| {
            if tx.get(&CONTAINERS, &rec.id)?.is_some() {
                tx.put(&CONTAINERS, &rec.id, rec)?;
            } else if tx.get(&CONTAINER_REMOVALS, &rec.id)?.is_some() {
                tx.put(&CONTAINER_REMOVALS, &rec.id, rec)?;
            }
            Ok::<(), RuntimeError>(())
        })?;
        Ok(())
    }

    /// Waits for the exit, up to `timeout`.
    async fn wait_exit(
        &self,
        pod_id: &str,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<proto::Exit>, RuntimeError> {
        let req = Request::Wait { id: id.to_owned() };
        let wait = self.inner.shims.call(pod_id, &req, None);
        match tokio::time::timeout(timeout, wait).await {
            Err(_) => Ok(None),
            Ok(Ok(Response::Exited(e))) => Ok(Some(e)),
            Ok(Ok(other)) => Err(RuntimeError::Runtime(format!(
                "unexpected shim answer {other:?}"
            ))),
            Ok(Err(e)) => Err(e),
        }
    }

    /// Signals, waits up to `timeout`, then kills. Caller holds the lock.
    async fn stop_locked(
        &self,
        rec: &mut ContainerRecord,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        if !matches!(rec.state, State::Created | State::Running) {
            return Ok(());
        }
        let kill = |signal: i32| Request::Kill {
            id: rec.id.clone(),
            signal,
        };
        let graceful = rec.state == State::Running && !timeout.is_zero();
        let first = kill(if graceful { rec.stop_signal } else { 9 });
        let sent = self
            .inner
            .shims
            .call_if_up(&rec.pod_id, &first, Some(KILL_WAIT))
            .await?;
        if sent.is_none() {
            // No shim: what it recorded before going is all there is. What
            // outlived it is killed by the release, which runs the runtime
            // directly, before the stop is answered (and only once: the
            // record is then released).
            let exit = self.inner.shims.exit_record(&rec.pod_id, &rec.id);
            apply_exit(rec, exit);
            self.inner.store.put(&CONTAINERS, &rec.id, rec)?;
            return self.release_runtime(rec).await;
        }
        let mut exit = None;
        if graceful {
            exit = self.wait_exit(&rec.pod_id, &rec.id, timeout).await?;
            if exit.is_none() {
                self.inner
                    .shims
                    .call(&rec.pod_id, &kill(9), Some(KILL_WAIT))
                    .await?;
            }
        }
        if exit.is_none() {
            exit = self.wait_exit(&rec.pod_id, &rec.id, KILL_WAIT).await?;
            if exit.is_none() {
                return Err(RuntimeError::Runtime(format!(
                    "container {} did not exit {KILL_WAIT:?} after SIGKILL",
                    rec.id
                )));
            }
        }
        apply_exit(rec, exit);
        self.inner.store.put(&CONTAINERS, &rec.id, rec)?;
        Ok(())
    }

    /// Releases an exited container's runtime state in the background
    /// (under its lock), off the caller's path.
    fn release_later(&self, id: String) {
        let this = self.clone();
        tokio::spawn(async move {
            let lock = this.lock_for(&id);
            let g = lock.lock().await;
            match this.inner.store.get(&CONTAINERS, &id) {
                Ok(Some(mut rec)) => {
                    if let Err(e) = this.release_runtime(&mut rec).await {
                        tracing::debug!(container_id = %id, error = %e, "releasing after stop");
                    }
                }
                // Removed meanwhile: nothing to release, and no lock to keep.
                Ok(None) => {
                    drop(g);
                    this.forget_lock(&id);
                }
                Err(e) => tracing::debug!(container_id = %id, error = %e, "releasing after stop"),
            }
        });
    }

    /// StopContainer: the stop signal, `timeout` to exit, then SIGKILL.
    /// Stopping a stopped container is fine.
    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError> {
        let id = self.must_resolve(id)?;
        let lock = self.lock_for(&id);
        let _g = lock.lock().await;
        let mut rec = self.get(&id)?;
        self.stop_locked(&mut rec, timeout).await?;
        tracing::info!(container_id = %id, "container stopped");
        if !rec.released {
            self.release_later(id);
        }
        Ok(())
    }

    /// RemoveContainer: kills a running container first; an unknown id is
    /// fine. The record and the name reservation go at once, in one
    /// transaction that also adds the container to `container_removals`;
    /// its runtime state and files go in the background, under its lock
    /// (so after a release still in progress), and the returned
    /// [`Removal`] completes when they are gone. A crash in between is
    /// finished by [`recover`](Self::recover).
    pub async fn remove(&self, id: &str) -> Result<Option<Removal>, RuntimeError> {
        let Some(id) = self.resolve_id(id)? else {
            return Ok(None);
        };
        let Some(rec) = self.inner.store.get(&CONTAINERS, &id)? else {
            return Ok(None);
        };
        // An exited container needs no lock: only its release still writes
        // the record, and that write follows it into the removals table.
        if matches!(rec.state, State::Creating | State::Created | State::Running) {
            let lock = self.lock_for(&id);
            let _g = lock.lock().await;
            let Some(mut rec) = self.inner.store.get(&CONTAINERS, &id)? else {
                return Ok(None);
            };
            self.stop_locked(&mut rec, Duration::ZERO).await?;
        }
        // Not synced: the background deletion ends with a durable commit a
        // few milliseconds later (so does any other caller's). A crash
        // before brings the record back as an exited container; recover()
        // completes the removal when its directory is already gone, and
        // otherwise kubelet's next RemoveContainer does.
        let removed = self.inner.store.write_unsynced(|tx| {
            let Some(rec) = tx.get(&CONTAINERS, &id)? else {
                return Ok::<_, RuntimeError>(None);
            };
            tx.delete(&CONTAINERS, &id)?;
            let key = rec.reservation_key();
            if tx.get(&CONTAINER_NAMES, &key)?.as_deref() == Some(id.as_str()) {
                tx.delete(&CONTAINER_NAMES, &key)?;
            }
            tx.put(&CONTAINER_REMOVALS, &id, &rec)?;
            Ok(Some(rec))
        })?;
        let Some(record) = removed else {
            return Ok(None);
        };
        tracing::info!(container_id = %id, "container removed");
        let this = self.clone();
        let done = tokio::spawn(async move {
            let r = this.finish_removal(&id).await;
            if let Err(e) = &r {
                tracing::warn!(container_id = %id, error = %e, "deleting a removed container's state; retried at the next start");
            }
            r
        });
        Ok(Some(Removal { record, done }))
    }

    /// Deletes a removed container's runtime state and files, then its
    /// entry in `container_removals`.
    async fn finish_removal(&self, id: &str) -> Result<(), RuntimeError> {
        let lock = self.lock_for(id);
        let g = lock.lock().await;
        let Some(rec) = self.inner.store.get(&CONTAINER_REMOVALS, id)? else {
            return Ok(());
        };
        if !rec.released {
            self.delete_runtime_state(&rec).await?;
        }
        let layout = Layout::new(&self.inner.paths.containers, id);
        tokio::task::spawn_blocking(move || rootfs::remove(&layout))
            .await
            .map_err(|e| RuntimeError::Runtime(e.to_string()))?
            .map_err(|e| RuntimeError::io("removing container rootfs", e))?;
        self.inner.store.write(|tx| {
            tx.delete(&CONTAINER_REMOVALS, id)?;
            Ok::<(), RuntimeError>(())
        })?;
        drop(g);
        self.forget_lock(id);
        Ok(())
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

    /// Finishes every pending removal, waiting for those in progress: at
    /// start (after a crash) and at shutdown. Failures are logged and left
    /// for the next start.
    pub async fn finish_removals(&self) -> Result<(), RuntimeError> {
        for (id, _) in self.inner.store.list(&CONTAINER_REMOVALS)? {
            if let Err(e) = self.finish_removal(&id).await {
                tracing::warn!(container_id = %id, error = %e, "finishing a container's removal; retried at the next start");
            }
        }
        Ok(())
    }

    /// Removed containers whose state is not deleted yet (their image
    /// snapshots must stay).
    pub fn pending_removals(&self) -> Result<Vec<ContainerRecord>, RuntimeError> {
        Ok(self
            .inner
            .store
            .list(&CONTAINER_REMOVALS)?
            .into_iter()
            .map(|(_, r)| r)
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

    /// StopPodSandbox: kills every container of the pod.
    pub async fn stop_pod(&self, pod_id: &str) -> Result<(), RuntimeError> {
        for rec in self.of_pod(pod_id)? {
            if matches!(rec.state, State::Created | State::Running) {
                self.stop(&rec.id, Duration::ZERO).await?;
            }
        }
        Ok(())
    }

    /// RemovePodSandbox: removes every container of the pod, then stops
    /// its shim. Returns the removed records.
    /// RemovePodSandbox: removes every container of the pod and waits until
    /// their state is deleted, then shuts the pod's shim down.
    pub async fn remove_pod(&self, pod_id: &str) -> Result<Vec<ContainerRecord>, RuntimeError> {
        let mut removed = Vec::new();
        for rec in self.of_pod(pod_id)? {
            if let Some(r) = self.remove(&rec.id).await? {
                removed.push(r.finished().await?);
            }
        }
        // Containers removed earlier whose deletion is still running (or
        // failed): finished before their shim goes.
        for rec in self.pending_removals()? {
            if rec.pod_id == pod_id {
                self.finish_removal(&rec.id).await?;
            }
        }
        self.inner.shims.shutdown(pod_id).await?;
        Ok(removed)
    }

    /// ExecSync: runs `cmd` in the container with its process settings.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        if cmd.is_empty() {
            return Err(RuntimeError::InvalidArgument("cmd is required".into()));
        }
        let id = self.must_resolve(id)?;
        let rec = self.get(&id)?;
        if rec.state != State::Running {
            return Err(RuntimeError::FailedPrecondition(format!(
                "container {id} is not running"
            )));
        }
        let bundle = Layout::new(&self.inner.paths.containers, &id).bundle();
        let spec: oci_spec::runtime::Spec = read_json(&bundle.join("config.json"))?;
        let process = berth_spec::process_for_exec(&spec, cmd)?;
        let file = bundle.join(format!("exec-{}.json", &new_id()[..16]));
        let json = serde_json::to_vec(&process)
            .map_err(|e| RuntimeError::Runtime(format!("serializing the exec process: {e}")))?;
        std::fs::write(&file, json).map_err(|e| RuntimeError::io("writing the exec process", e))?;
        let answer = self
            .inner
            .shims
            .call(
                &rec.pod_id,
                &Request::ExecSync(proto::ExecSync {
                    id: id.clone(),
                    process: file.clone(),
                    timeout_ms: timeout.as_millis() as u64,
                    max_output: self.inner.config.exec_max_output,
                }),
                None,
            )
            .await;
        let _ = std::fs::remove_file(&file);
        match answer? {
            Response::ExecResult {
                timed_out: true, ..
            } => Err(RuntimeError::DeadlineExceeded(format!(
                "command {cmd:?} in container {id} timed out after {timeout:?}"
            ))),
            Response::ExecResult {
                exit_code,
                stdout,
                stderr,
                ..
            } => Ok(ExecOutput {
                exit_code,
                stdout,
                stderr,
            }),
            other => Err(RuntimeError::Runtime(format!(
                "unexpected shim answer {other:?}"
            ))),
        }
    }

    /// UpdateContainerResources: applied by the OCI runtime to the live
    /// cgroup, then recorded.
    pub async fn update_resources(
        &self,
        id: &str,
        resources: &LinuxContainerResources,
    ) -> Result<(), RuntimeError> {
        let id = self.must_resolve(id)?;
        let lock = self.lock_for(&id);
        let _g = lock.lock().await;
        let mut rec = self.get(&id)?;
        if !matches!(rec.state, State::Created | State::Running) {
            return Err(RuntimeError::FailedPrecondition(format!(
                "container {id} is not running"
            )));
        }
        let oci = berth_spec::linux_resources(resources)?;
        let bundle = Layout::new(&self.inner.paths.containers, &id).bundle();
        let file = bundle.join("update.json");
        std::fs::write(&file, serde_json::to_vec(&oci).unwrap_or_default())
            .map_err(|e| RuntimeError::io("writing resources", e))?;
        let runtime = self.runtime_for(&rec.handler)?;
        let out = self
            .inner
            .sealed
            .command(&runtime)?
            .arg("update")
            .arg("--resources")
            .arg(&file)
            .arg(&id)
            .output()
            .await
            .map_err(|e| {
                RuntimeError::Runtime(format!("running {}: {e}", runtime.path.display()))
            })?;
        let _ = std::fs::remove_file(&file);
        if !out.status.success() {
            return Err(RuntimeError::Runtime(format!(
                "update: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let mut cfg = (*rec.config()).clone();
        cfg.linux.get_or_insert_default().resources = Some(resources.clone());
        rec.set_config(&cfg);
        self.inner.store.put(&CONTAINERS, &id, &rec)?;
        Ok(())
    }

    /// ReopenContainerLog: the shim reopens the log file (after kubelet
    /// renamed it).
    pub async fn reopen_log(&self, id: &str) -> Result<(), RuntimeError> {
        let id = self.must_resolve(id)?;
        let rec = self.get(&id)?;
        if rec.state != State::Running {
            return Err(RuntimeError::FailedPrecondition(format!(
                "container {id} is not running"
            )));
        }
        self.inner
            .shims
            .call(&rec.pod_id, &Request::ReopenLog { id }, Some(KILL_WAIT))
            .await?;
        Ok(())
    }

    /// At daemon start: unwinds creates a crash interrupted, reconnects to
    /// live shims, and records exits that happened while berthd was down.
    /// `pod_ids` are the pods berthd knows, whose shims may hold
    /// containers.
    pub async fn recover(&self, pod_ids: &[String]) -> Result<(), RuntimeError> {
        self.finish_removals().await?;
        for (id, rec) in self.inner.store.list(&CONTAINERS)? {
            match rec.state {
                State::Creating => {
                    tracing::warn!(container_id = %id, "unwinding a container interrupted while being created");
                    self.unwind(&rec).await;
                    self.forget(&rec)?;
                }
                State::Created | State::Running => {
                    // An exit while berthd was down is on disk: take it now,
                    // so the first status after a restart is already right.
                    let exit = self.inner.shims.exit_record(&rec.pod_id, &id);
                    if exit.is_some() || !self.inner.shims.alive(&rec.pod_id).await {
                        self.record_exit(&id, exit).await?;
                    } else if rec.state == State::Running {
                        self.watch(rec.pod_id.clone(), id.clone());
                    }
                }
                State::Exited | State::Unknown => {
                    let dir = Layout::new(&self.inner.paths.containers, &id).bundle();
                    if !dir.exists() {
                        // A removal whose unsynced commit a crash lost
                        // after its files went: completed.
                        tracing::warn!(container_id = %id, "completing the removal of a container whose files are gone");
                        if !rec.released
                            && let Err(e) = self.delete_runtime_state(&rec).await
                        {
                            tracing::warn!(container_id = %id, error = %e, "deleting its runtime state");
                        }
                        self.forget(&rec)?;
                    }
                }
            }
        }
        self.delete_unrecorded(pod_ids).await?;
        self.sweep_orphan_dirs()?;
        Ok(())
    }

    /// Containers a live shim holds that no record names (berthd died
    /// between a create's unsynced reservation and its durable record):
    /// deleted through their shim, which runs the runtime's `delete
    /// --force`. Before the directory sweep: the runtime logs to the
    /// container's bundle.
    async fn delete_unrecorded(&self, pod_ids: &[String]) -> Result<(), RuntimeError> {
        for pod_id in pod_ids {
            let listed = match self
                .inner
                .shims
                .call_if_up(pod_id, &Request::List, Some(KILL_WAIT))
                .await
            {
                Ok(Some(Response::Containers { containers })) => containers,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(pod_id = %pod_id, error = %e, "listing the containers of a shim");
                    continue;
                }
            };
            for c in listed {
                if self.has_record(&c.id)? {
                    continue;
                }
                tracing::warn!(container_id = %c.id, pod_id = %pod_id, "deleting a container its shim holds under no record");
                let req = Request::Delete { id: c.id.clone() };
                if let Err(e) = self
                    .inner
                    .shims
                    .call_if_up(pod_id, &req, Some(KILL_WAIT))
                    .await
                {
                    tracing::warn!(container_id = %c.id, error = %e, "deleting an unrecorded container");
                }
            }
        }
        Ok(())
    }

    /// Whether a record names container `id`: a container's, or a removal
    /// still to finish.
    fn has_record(&self, id: &str) -> Result<bool, RuntimeError> {
        Ok(self.inner.store.get_shared(&CONTAINERS, id)?.is_some()
            || self.inner.store.get(&CONTAINER_REMOVALS, id)?.is_some())
    }

    /// Container directories no record names (a crash between mounting a
    /// rootfs and committing its record): unmounted and removed.
    fn sweep_orphan_dirs(&self) -> Result<(), RuntimeError> {
        let Ok(entries) = std::fs::read_dir(&self.inner.paths.containers) else {
            return Ok(());
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !e.file_type().is_ok_and(|t| t.is_dir()) || self.has_record(&name)? {
                continue;
            }
            tracing::warn!(container_id = %name, "removing a container directory no record names");
            if let Err(err) = rootfs::remove(&Layout::new(&self.inner.paths.containers, &name)) {
                tracing::warn!(container_id = %name, error = %err, "removing an orphaned container directory");
            }
        }
        Ok(())
    }

    /// Where a container's files are (for verbose status).
    pub fn bundle(&self, id: &str) -> PathBuf {
        Layout::new(&self.inner.paths.containers, id).bundle()
    }
}

fn apply_exit(rec: &mut ContainerRecord, exit: Option<proto::Exit>) {
    rec.state = State::Exited;
    match exit {
        Some(e) => {
            rec.finished_at = e.finished_at_ns;
            rec.exit_code = e.exit_code;
            rec.reason = if e.oom_killed {
                "OOMKilled"
            } else if e.exit_code == 0 {
                "Completed"
            } else {
                "Error"
            }
            .into();
        }
        None => {
            rec.state = State::Unknown;
            rec.finished_at = now_ns();
            rec.exit_code = 255;
            rec.reason = "Unknown".into();
            rec.message = "the pod's shim is gone and recorded no exit".into();
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Result<T, RuntimeError> {
    let bytes =
        std::fs::read(p).map_err(|e| RuntimeError::io(format!("reading {}", p.display()), e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| RuntimeError::Runtime(format!("{}: {e}", p.display())))
}

/// The CRI log path: `log_path` relative to the pod's log directory, and
/// never outside it. Empty: no log.
pub fn resolve_log_path(log_dir: &str, log_path: &str) -> Result<Option<PathBuf>, RuntimeError> {
    if log_path.is_empty() {
        return Ok(None);
    }
    if log_dir.is_empty() || !log_dir.starts_with('/') {
        return Err(RuntimeError::InvalidArgument(format!(
            "log_path {log_path:?} needs an absolute pod log_directory (got {log_dir:?})"
        )));
    }
    let rel = Path::new(log_path);
    let bad = rel.is_absolute()
        || rel.components().any(|c| {
            !matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
    if bad {
        return Err(RuntimeError::InvalidArgument(format!(
            "log_path {log_path:?} must be relative to the pod's log directory and stay inside it"
        )));
    }
    Ok(Some(Path::new(log_dir).join(rel)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_paths_stay_in_the_pod_log_dir() {
        assert_eq!(resolve_log_path("/var/log/pods/x", "").unwrap(), None);
        assert_eq!(
            resolve_log_path("/var/log/pods/x", "web/0.log").unwrap(),
            Some(PathBuf::from("/var/log/pods/x/web/0.log"))
        );
        for bad in ["../x.log", "web/../../x.log", "/etc/passwd"] {
            let e = resolve_log_path("/var/log/pods/x", bad).unwrap_err();
            assert!(matches!(e, RuntimeError::InvalidArgument(_)), "{bad}: {e}");
        }
        assert!(resolve_log_path("", "a.log").is_err());
        assert!(resolve_log_path("relative", "a.log").is_err());
    }

    #[test]
    fn exits_get_kubelet_reasons() {
        let mut r = crate::record::tests_support::record();
        let exit = |code, oom| proto::Exit {
            pid: 1,
            exit_code: code,
            signal: None,
            finished_at_ns: 5,
            oom_killed: oom,
        };
        apply_exit(&mut r, Some(exit(0, false)));
        assert_eq!(
            (r.state, r.reason.as_str(), r.finished_at),
            (State::Exited, "Completed", 5)
        );
        apply_exit(&mut r, Some(exit(1, false)));
        assert_eq!(r.reason, "Error");
        apply_exit(&mut r, Some(exit(137, true)));
        assert_eq!((r.exit_code, r.reason.as_str()), (137, "OOMKilled"));
        apply_exit(&mut r, None);
        assert_eq!((r.state, r.exit_code), (State::Unknown, 255));
    }
}
