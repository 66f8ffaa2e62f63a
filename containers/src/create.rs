//! CreateContainer: the rootfs mounted while the name is reserved, the OCI
//! bundle from the CRI config and the pod's view, the runtime's `create`
//! through the pod's shim (started if it is the pod's first container);
//! any failure unwinds all of it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_shim::proto::{self, Request, Response};
use berth_spec::SpecInput;
use berth_util::id::new_id;
use berth_util::time::now_ns;
use k8s_cri::v1::{ContainerConfig, PodSandboxConfig};

use crate::error::RuntimeError;
use crate::idmap::Idmap;
use crate::image_volumes::{ImageVolume, is_image_volume, with_image_volumes};
use crate::record::{
    CONTAINER_NAMES, CONTAINERS, ContainerRecord, ImageRef, State, reservation_key,
};
use crate::rootfs::{self, Layout};
use crate::service::Containers;

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
    /// The pod's own user namespace, if it has one: its containers' layers
    /// and idmapped volumes are mapped through it (idmap.rs).
    pub userns: Option<PodUserNs>,
}

/// A pod's own user namespace, as its containers' mounts need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUserNs {
    /// Where berth-pod pinned it.
    pub path: PathBuf,
    /// The host uid and gid of the pod's root.
    pub root: (u32, u32),
}

#[derive(Debug)]
pub struct CreateRequest<'a> {
    pub pod: &'a SandboxView,
    /// The container's name and attempt (its metadata, checked by the
    /// caller): they reserve the name in the pod.
    pub name: String,
    pub attempt: u32,
    pub config: ContainerConfig,
    pub sandbox_config: PodSandboxConfig,
    pub image: ImageInfo,
    /// The config's image volumes, in `mounts` order.
    pub image_volumes: Vec<ImageVolume>,
}

impl Containers {
    /// CreateContainer. Any failure unwinds what was done.
    pub async fn create(&self, req: CreateRequest<'_>) -> Result<String, RuntimeError> {
        let pod = req.pod;
        if !pod.ready {
            return Err(RuntimeError::PodNotReady(pod.id.clone()));
        }
        check_mounts(&req.config, &self.inner.paths.protected)?;
        let expected = req
            .config
            .mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| is_image_volume(m))
            .map(|(i, _)| i);
        if !req.image_volumes.iter().map(|v| v.mount).eq(expected) {
            return Err(RuntimeError::ImageVolumes(
                "not resolved for every mount that names an image".into(),
            ));
        }
        let runtime = self.runtime_for(&pod.runtime_handler)?;
        let handler = self
            .inner
            .config
            .handler(&pod.runtime_handler)
            .map(|(n, _)| n.to_owned())
            .unwrap_or_default();
        let log_path = resolve_log_path(&pod.log_directory, &req.config.log_path)?;
        if let Some(p) = &log_path {
            make_log_dirs(Path::new(&pod.log_directory), p)?;
        }
        let stop_signal = berth_spec::stop_signal(&req.image.config)?;
        let id = new_id();
        let key = reservation_key(&req.name, req.attempt, &pod.id);
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
            let volumes: Vec<Vec<PathBuf>> =
                req.image_volumes.iter().map(|v| v.lowers.clone()).collect();
            let userns = pod.userns.clone();
            tokio::task::spawn_blocking(move || {
                let idmap = userns.map(|u| Idmap::open(&u.path, u.root)).transpose()?;
                rootfs::mount_rootfs(&l, &lowers, idmap.as_ref())?;
                let staged = rootfs::mount_image_volumes(&l, &volumes, idmap.as_ref())?;
                Ok::<_, std::io::Error>((idmap, staged))
            })
        };
        let reserved = self.inner.store.write_unsynced(|tx| {
            if let Some(other) = tx.get(&CONTAINER_NAMES, &key)? {
                return Err(RuntimeError::NameTaken {
                    name: req.name.clone(),
                    id: other,
                });
            }
            tx.put(&CONTAINER_NAMES, &key, &id)?;
            tx.put(&CONTAINERS, &id, &rec)?;
            Ok(())
        });
        let mounted = match mounting.await {
            Ok(r) => r.map_err(|e| RuntimeError::io("container rootfs", e)),
            Err(e) => Err(RuntimeError::Task(e.to_string())),
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
            Ok((idmap, staged)) => {
                self.create_parts(&req, &rec, runtime, log_path, idmap.as_ref(), &staged)
                    .await
            }
            Err(e) => Err(e),
        };
        match parts {
            Ok((pid, user)) => {
                rec.state = State::Created;
                rec.pid = pid;
                rec.user = Some(user);
                self.inner.store.put(&CONTAINERS, &id, &rec)?;
                self.inner
                    .events
                    .emit(&id, &pod.id, crate::events::EventKind::Created);
                tracing::info!(container_id = %id, pod_id = %pod.id, name = %req.name, "container created");
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

    pub(crate) async fn create_parts(
        &self,
        req: &CreateRequest<'_>,
        rec: &ContainerRecord,
        runtime: proto::Runtime,
        log_path: Option<PathBuf>,
        idmap: Option<&Idmap>,
        image_volumes: &[PathBuf],
    ) -> Result<(u32, crate::record::User), RuntimeError> {
        let layout = Layout::new(&self.inner.paths.containers, &rec.id);
        let pod = req.pod;
        let rootfs_path = layout.rootfs();
        // The record keeps the config as sent (ContainerStatus reports its
        // mounts); the spec binds the staged image volumes.
        let staged_config;
        let config = if image_volumes.is_empty() {
            &req.config
        } else {
            staged_config = ContainerConfig {
                mounts: with_image_volumes(&req.config.mounts, image_volumes)?,
                ..req.config.clone()
            };
            &staged_config
        };
        let mut spec = berth_spec::generate(&SpecInput {
            id: &rec.id,
            config,
            sandbox_config: &req.sandbox_config,
            image: &req.image.config,
            rootfs: &rootfs_path,
            sandbox: &pod.join,
            cgroups_path: rec.cgroups_path.clone(),
            min_oom_score_adj: self.inner.min_oom_score_adj,
            rlimits: &self.inner.rlimits,
            pids_limit: self.inner.config.default_pids_limit,
        })?;
        crate::idmap::stage_volumes(&mut spec, idmap, &layout.idmapped())
            .map_err(|e| RuntimeError::io("idmapped volumes", e))?;
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
        let json = serde_json::to_vec(&spec).map_err(|e| RuntimeError::Corrupt {
            path: bundle.join("config.json"),
            message: format!("serializing the OCI spec: {e}"),
        })?;
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
                    stdin_once: req.config.stdin_once,
                    tty: req.config.tty,
                    memory_cgroup: self.memory_cgroup(&rec.cgroups_path),
                }),
                Some(Duration::from_secs(120)),
            )
            .await?;
        match created {
            Response::Created { pid } => Ok((pid, user)),
            other => Err(RuntimeError::unexpected(&pod.id, other)),
        }
    }

    /// Undoes a partial create: runtime state, rootfs, dirs.
    pub(crate) async fn unwind(&self, rec: &ContainerRecord) {
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
    pub(crate) fn forget(&self, rec: &ContainerRecord) -> Result<(), RuntimeError> {
        let key = rec.reservation_key();
        self.inner.store.write(|tx| {
            tx.delete(&CONTAINERS, &rec.id)?;
            if tx.get(&CONTAINER_NAMES, &key)?.as_deref() == Some(rec.id.as_str()) {
                tx.delete(&CONTAINER_NAMES, &key)?;
            }
            Ok::<(), RuntimeError>(())
        })
    }
}

/// Refuses a writable mount, into a container that is not privileged, of
/// berth's root or state directory, of anything inside them, or of a
/// directory that holds them (a container wrote into berth's store
/// through one). Read-only mounts stay allowed: node agents read them.
/// Paths are compared after resolving symlinks on the host; a source that
/// does not exist is left to the runtime's own checks.
pub fn check_mounts(config: &ContainerConfig, protected: &[PathBuf]) -> Result<(), RuntimeError> {
    let privileged = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.privileged);
    if privileged {
        return Ok(());
    }
    let protected: Vec<PathBuf> = protected
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        .collect();
    // Image volumes are read-only overlays of images; their host_path is
    // not used.
    for m in config
        .mounts
        .iter()
        .filter(|m| !m.readonly && !is_image_volume(m))
    {
        let Ok(host) = std::fs::canonicalize(&m.host_path) else {
            continue;
        };
        if let Some(p) = protected
            .iter()
            .find(|p| host.starts_with(p) || p.starts_with(&host))
        {
            return Err(RuntimeError::ProtectedMount {
                host_path: PathBuf::from(&m.host_path),
                protected: p.clone(),
            });
        }
    }
    Ok(())
}

/// Makes the directories of a container's log file that do not exist yet,
/// the pod's log directory and below it, as containerd does (kubelet's own
/// container subdirectories included). Never outside it: below the pod's
/// log directory a component that exists must be a real directory, not a
/// symlink.
pub fn make_log_dirs(log_dir: &Path, log_file: &Path) -> Result<(), RuntimeError> {
    let Some(parent) = log_file.parent() else {
        return Ok(());
    };
    let rel = parent.strip_prefix(log_dir).unwrap_or(Path::new(""));
    // The pod's log directory itself is where kubelet said.
    std::fs::create_dir_all(log_dir)
        .map_err(|e| RuntimeError::io(format!("making log directory {}", log_dir.display()), e))?;
    let mut dir = log_dir.to_owned();
    for c in rel.components() {
        dir.push(c);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                return Err(RuntimeError::BadLogPath {
                    path: log_file.display().to_string(),
                    reason: format!("{} is not a directory", dir.display()),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(RuntimeError::io(
                    format!("log directory {}", dir.display()),
                    e,
                ));
            }
        }
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::io(
                    format!("making log directory {}", dir.display()),
                    e,
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The CRI log path: `log_path` relative to the pod's log directory, and
/// never outside it. Empty: no log.
pub fn resolve_log_path(log_dir: &str, log_path: &str) -> Result<Option<PathBuf>, RuntimeError> {
    if log_path.is_empty() {
        return Ok(None);
    }
    if log_dir.is_empty() || !log_dir.starts_with('/') {
        return Err(RuntimeError::BadLogPath {
            path: log_path.to_owned(),
            reason: format!("needs an absolute pod log_directory (got {log_dir:?})"),
        });
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
        return Err(RuntimeError::BadLogPath {
            path: log_path.to_owned(),
            reason: "must be relative to the pod's log directory and stay inside it".into(),
        });
    }
    Ok(Some(Path::new(log_dir).join(rel)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_volumes_are_not_checked_as_host_paths() {
        let d = tempfile::tempdir().unwrap();
        let cfg = ContainerConfig {
            mounts: vec![k8s_cri::v1::Mount {
                host_path: d.path().display().to_string(),
                container_path: "/m".into(),
                image: Some(k8s_cri::v1::ImageSpec {
                    image: "tools:v1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        check_mounts(&cfg, &[d.path().to_owned()]).unwrap();
    }

    #[test]
    fn log_dirs_are_made_inside_the_pod_log_dir_only() {
        let d = tempfile::tempdir().unwrap();
        let log_dir = d.path().join("pods/ns_web_uid");
        let file = log_dir.join("app/0.log");
        make_log_dirs(&log_dir, &file).unwrap();
        assert!(log_dir.join("app").is_dir());
        // Again: fine.
        make_log_dirs(&log_dir, &file).unwrap();
        // A symlink where a directory should be is not followed.
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, log_dir.join("evil")).unwrap();
        let e = make_log_dirs(&log_dir, &log_dir.join("evil/sub/0.log")).unwrap_err();
        assert!(matches!(e, RuntimeError::BadLogPath { .. }), "{e}");
        assert!(!outside.join("sub").exists());
    }

    #[test]
    fn writable_mounts_of_berths_dirs_are_refused_unless_privileged() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("var/lib/berth");
        std::fs::create_dir_all(root.join("containers")).unwrap();
        std::fs::create_dir_all(d.path().join("data")).unwrap();
        std::os::unix::fs::symlink(&root, d.path().join("link")).unwrap();
        let protected = [root.clone()];
        let cfg = |host: &std::path::Path, readonly: bool, privileged: bool| ContainerConfig {
            mounts: vec![k8s_cri::v1::Mount {
                host_path: host.display().to_string(),
                container_path: "/m".into(),
                readonly,
                ..Default::default()
            }],
            linux: Some(k8s_cri::v1::LinuxContainerConfig {
                security_context: Some(k8s_cri::v1::LinuxContainerSecurityContext {
                    privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        for bad in [
            root.clone(),
            root.join("containers"),
            d.path().join("var"),
            d.path().join("link"),
        ] {
            let e = check_mounts(&cfg(&bad, false, false), &protected).unwrap_err();
            assert!(
                matches!(e, RuntimeError::ProtectedMount { .. }),
                "{}: {e}",
                bad.display()
            );
            check_mounts(&cfg(&bad, true, false), &protected).unwrap();
            check_mounts(&cfg(&bad, false, true), &protected).unwrap();
        }
        check_mounts(&cfg(&d.path().join("data"), false, false), &protected).unwrap();
        check_mounts(&cfg(&d.path().join("missing"), false, false), &protected).unwrap();
    }

    #[test]
    fn log_paths_stay_in_the_pod_log_dir() {
        assert_eq!(resolve_log_path("/var/log/pods/x", "").unwrap(), None);
        assert_eq!(
            resolve_log_path("/var/log/pods/x", "web/0.log").unwrap(),
            Some(PathBuf::from("/var/log/pods/x/web/0.log"))
        );
        for bad in ["../x.log", "web/../../x.log", "/etc/passwd"] {
            let e = resolve_log_path("/var/log/pods/x", bad).unwrap_err();
            assert!(matches!(e, RuntimeError::BadLogPath { .. }), "{bad}: {e}");
        }
        assert!(resolve_log_path("", "a.log").is_err());
        assert!(resolve_log_path("relative", "a.log").is_err());
    }
}
