//! Container RPCs: CRI messages to and from berth-runtime's types, and the
//! image leases that keep a container's snapshots alive.

use std::collections::HashMap;
use std::sync::Arc;

use berth_containers::{
    ContainerFilter, ContainerRecord, CreateRequest, ImageInfo, ImageRef, ImageVolume, PodUserNs,
    SandboxView, State, is_image_volume,
};
use berth_pod::{NsMode, SandboxRecord, SandboxState};
use berth_spec::PidNs;
use k8s_cri::v1 as cri;
use tonic::Status;

use super::Shared;
use crate::{error, leases};

fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg.into())
}

/// CreateContainer: pod ready, image present (leased), then the runtime.
pub async fn create(shared: Arc<Shared>, r: cri::CreateContainerRequest) -> Result<String, Status> {
    let config = r.config.ok_or_else(|| error::missing("config"))?;
    let (name, attempt) = crate::validate::container(&config)?;
    let image_name = config
        .image
        .as_ref()
        .map(|i| i.image.clone())
        .unwrap_or_default();
    let pod = shared.pods.status(&r.pod_sandbox_id).map_err(error::pod)?;
    let found = shared
        .images
        .resolve(&image_name)
        .map_err(error::image)?
        .ok_or_else(|| Status::not_found(format!("image {image_name:?} not found")))?;
    // Image volumes (KEP-4639): kubelet pulled each image first, as it
    // does the container's; none is pulled here.
    let mut volume_ids = Vec::new();
    for m in config.mounts.iter().filter(|m| is_image_volume(m)) {
        let name = m
            .image
            .as_ref()
            .map(|i| i.image.as_str())
            .unwrap_or_default();
        let rec = shared
            .images
            .resolve(name)
            .map_err(error::image)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "image {name:?} of the image volume at {:?} not found (pull it first)",
                    m.container_path
                ))
            })?;
        volume_ids.push(rec.id);
    }
    let lease = leases::take(
        &shared.images,
        &pod.id,
        &name,
        attempt,
        &found.id,
        &volume_ids,
    )
    .await
    .map_err(error::image)?;
    let image_volumes: Vec<ImageVolume> = config
        .mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| is_image_volume(m))
        .map(|(i, _)| i)
        .zip(&lease.volumes)
        .map(|(mount, rec)| ImageVolume {
            mount,
            lowers: shared.images.lower_dirs(rec),
        })
        .collect();
    let image = &lease.image;
    let config_blob = shared.images.config_blob(&image.id).map_err(error::image)?;
    let image_config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&config_blob)
        .map_err(|e| Status::internal(format!("image {} config: {e}", image.id)))?;
    let info = ImageInfo {
        image: ImageRef {
            requested: image_name.clone(),
            id: image.id.to_string(),
            repo_digest: image
                .repo_digests
                .first()
                .cloned()
                .unwrap_or_else(|| image.id.to_string()),
            repo_tag: image.repo_tags.first().cloned().unwrap_or(image_name),
        },
        lowers: shared.images.lower_dirs(image),
        config: image_config,
    };
    let view = sandbox_view(&pod)?;
    let created = shared
        .containers
        .create(CreateRequest {
            pod: &view,
            name,
            attempt,
            config,
            sandbox_config: stored_sandbox_config(&pod, r.sandbox_config),
            image: info,
            image_volumes,
        })
        .await;
    created.map_err(|e| {
        leases::create_failed(&shared.images, &lease, &e);
        error::container(e)
    })
}

/// The pod's config as RunPodSandbox received it: what a container's
/// privilege, user namespace and sysctls are decided from. The copy a
/// CreateContainer carries is never trusted: it could claim a privileged
/// pod, or sysctls the pod never passed. A record made before berth kept
/// the config uses the request's copy, never privileged.
fn stored_sandbox_config(
    pod: &SandboxRecord,
    request: Option<cri::PodSandboxConfig>,
) -> cri::PodSandboxConfig {
    use base64::Engine;
    use prost::Message;
    if !pod.spec.cri_config.is_empty()
        && let Some(c) = base64::engine::general_purpose::STANDARD
            .decode(&pod.spec.cri_config)
            .ok()
            .and_then(|b| cri::PodSandboxConfig::decode(b.as_slice()).ok())
    {
        return c;
    }
    let mut c = request.unwrap_or_default();
    if let Some(sc) = c.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
        sc.privileged = false;
    }
    c
}

/// What the container code needs of a pod: its namespaces and files, its
/// cgroup, handler and log directory.
fn sandbox_view(pod: &SandboxRecord) -> Result<SandboxView, Status> {
    let pid = match (pod.spec.namespaces.pid, pod.pid_holder) {
        (NsMode::Node, _) => PidNs::Host,
        (NsMode::Pod, Some(holder)) => PidNs::Pod(berth_pod::pidns::ns_path(holder)),
        (NsMode::Pod, None) => {
            return Err(Status::failed_precondition(format!(
                "pod {} shares a PID namespace but has no holder process",
                pod.id
            )));
        }
        (NsMode::Container, _) => PidNs::Container,
    };
    Ok(SandboxView {
        id: pod.id.clone(),
        ready: pod.state == SandboxState::Ready,
        runtime_handler: pod.spec.runtime_handler.clone(),
        log_directory: pod.spec.log_directory.clone(),
        cgroup: pod.cgroup.clone(),
        join: berth_spec::Sandbox {
            netns: pod.netns.clone(),
            ipc_ns: pod.ipcns.clone(),
            uts_ns: pod.utsns.clone(),
            user_ns: pod.userns.clone(),
            pid,
            hostname: pod.spec.hostname.clone(),
            hostname_file: Some(pod.files_dir.join("hostname")),
            hosts_file: Some(pod.files_dir.join("hosts")),
            resolv_conf: Some(pod.files_dir.join("resolv.conf")),
            shm: pod.shm.clone(),
        },
        userns: pod
            .userns
            .clone()
            .zip(pod.spec.userns)
            .map(|(path, u)| PodUserNs {
                path,
                root: u.root(),
            }),
    })
}

fn state(s: State) -> i32 {
    match s {
        State::Creating | State::Created => cri::ContainerState::ContainerCreated as i32,
        State::Running => cri::ContainerState::ContainerRunning as i32,
        State::Exited => cri::ContainerState::ContainerExited as i32,
        State::Unknown => cri::ContainerState::ContainerUnknown as i32,
    }
}

fn image_spec(rec: &ContainerRecord, cfg: &cri::ContainerConfig) -> cri::ImageSpec {
    cri::ImageSpec {
        image: if rec.image.repo_tag.is_empty() {
            rec.image.requested.clone()
        } else {
            rec.image.repo_tag.clone()
        },
        annotations: cfg
            .image
            .as_ref()
            .map(|i| i.annotations.clone())
            .unwrap_or_default(),
        ..Default::default()
    }
}

pub fn list_item(rec: &ContainerRecord) -> cri::Container {
    let cfg = rec.config();
    cri::Container {
        id: rec.id.clone(),
        pod_sandbox_id: rec.pod_id.clone(),
        metadata: cfg.metadata.clone(),
        image: Some(image_spec(rec, &cfg)),
        image_ref: rec.image.repo_digest.clone(),
        state: state(rec.state),
        created_at: rec.created_at,
        labels: cfg.labels.clone(),
        annotations: cfg.annotations.clone(),
        image_id: rec.image.id.clone(),
    }
}

pub fn status(
    shared: &Shared,
    rec: &ContainerRecord,
    verbose: bool,
) -> cri::ContainerStatusResponse {
    let cfg = rec.config();
    let status = cri::ContainerStatus {
        id: rec.id.clone(),
        metadata: cfg.metadata.clone(),
        state: state(rec.state),
        created_at: rec.created_at,
        started_at: rec.started_at,
        finished_at: rec.finished_at,
        exit_code: rec.exit_code,
        image: Some(image_spec(rec, &cfg)),
        image_ref: rec.image.repo_digest.clone(),
        reason: rec.reason.clone(),
        message: rec.message.clone(),
        labels: cfg.labels.clone(),
        annotations: cfg.annotations.clone(),
        mounts: cfg.mounts.clone(),
        log_path: rec
            .log_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        resources: cfg
            .linux
            .as_ref()
            .and_then(|l| l.resources.clone())
            .map(|r| cri::ContainerResources {
                linux: Some(r),
                ..Default::default()
            }),
        image_id: rec.image.id.clone(),
        user: rec.user.as_ref().map(|u| cri::ContainerUser {
            linux: Some(cri::LinuxContainerUser {
                uid: u.uid.into(),
                gid: u.gid.into(),
                supplemental_groups: u.additional_gids.iter().map(|g| i64::from(*g)).collect(),
            }),
        }),
    };
    let mut info = HashMap::new();
    if verbose {
        let v = serde_json::json!({
            "id": rec.id,
            "sandboxID": rec.pod_id,
            "pid": rec.pid,
            "runtimeHandler": rec.handler,
            "cgroupsPath": rec.cgroups_path,
            "bundle": shared.containers.bundle(&rec.id),
            "stopSignal": rec.stop_signal,
        });
        info.insert("info".to_owned(), v.to_string());
    }
    cri::ContainerStatusResponse {
        status: Some(status),
        info,
    }
}

pub fn filter_from(f: Option<cri::ContainerFilter>) -> ContainerFilter {
    let Some(f) = f else {
        return ContainerFilter::default();
    };
    ContainerFilter {
        id: Some(f.id).filter(|s| !s.is_empty()),
        pod_id: Some(f.pod_sandbox_id).filter(|s| !s.is_empty()),
        state: f
            .state
            .map(|s| match cri::ContainerState::try_from(s.state) {
                Ok(cri::ContainerState::ContainerCreated) => State::Created,
                Ok(cri::ContainerState::ContainerRunning) => State::Running,
                Ok(cri::ContainerState::ContainerExited) => State::Exited,
                _ => State::Unknown,
            }),
        labels: f.label_selector,
    }
}

/// Seconds from a CRI timeout field; negative is bad input.
pub fn timeout(secs: i64, what: &str) -> Result<std::time::Duration, Status> {
    u64::try_from(secs)
        .map(std::time::Duration::from_secs)
        .map_err(|_| invalid(format!("{what} {secs} is negative")))
}
