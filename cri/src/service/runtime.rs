//! CRI RuntimeService: runtime status and config, pod sandboxes,
//! containers, ExecSync and stats. Streaming (Exec, Attach, PortForward),
//! events, checkpoints and the CRI metrics calls answer UNIMPLEMENTED
//! until their capability lands.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use berth_metrics::health::Phase;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use k8s_cri::v1::*;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::{Shared, container, events, pod, podmetrics, stats};
use crate::settings::NetworkSettings;
use crate::{error, leases};

/// The CRI API version berth implements.
pub const RUNTIME_API_VERSION: &str = "v1";
pub const RUNTIME_NAME: &str = "berth";

#[derive(Debug, Clone)]
pub struct RuntimeSvc {
    shared: Arc<Shared>,
}

impl RuntimeSvc {
    pub fn new(shared: Arc<Shared>) -> Self {
        RuntimeSvc { shared }
    }
}

/// Runs `f` where it may block on files (a sample read on demand walks a
/// writable layer, enters a network namespace).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("stats task failed: {e}")))
}

type EventStream = Pin<Box<dyn Stream<Item = Result<ContainerEventResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RuntimeService for RuntimeSvc {
    async fn version(
        &self,
        _request: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            // The version of the kubelet-runtime API message format.
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: RUNTIME_API_VERSION.into(),
        }))
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let verbose = request.into_inner().verbose;
        // A few stat calls and one store read (the network config is cached
        // until its dir changes): cheaper inline than any hand-off to a
        // blocking thread, and kubelet polls this.
        let resp = super::status::status(&self.shared, verbose);
        Ok(Response::new(resp))
    }

    async fn runtime_config(
        &self,
        _request: Request<RuntimeConfigRequest>,
    ) -> Result<Response<RuntimeConfigResponse>, Status> {
        let driver = match self.shared.config.pod.cgroup_driver {
            berth_cgroups::CgroupDriver::Cgroupfs => CgroupDriver::Cgroupfs,
            berth_cgroups::CgroupDriver::Systemd => CgroupDriver::Systemd,
        };
        Ok(Response::new(RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration {
                cgroup_driver: driver as i32,
            }),
        }))
    }

    async fn update_runtime_config(
        &self,
        request: Request<UpdateRuntimeConfigRequest>,
    ) -> Result<Response<UpdateRuntimeConfigResponse>, Status> {
        let config = request
            .into_inner()
            .runtime_config
            .ok_or_else(|| error::missing("runtime_config"))?;
        // kubelet sends an empty network config when it has no pod CIDR
        // (e.g. CNI assigns ranges itself): nothing to remember.
        let Some(cidr) = config
            .network_config
            .map(|n| n.pod_cidr)
            .filter(|c| !c.trim().is_empty())
        else {
            return Ok(Response::new(UpdateRuntimeConfigResponse {}));
        };
        let pod_cidrs = NetworkSettings::parse_pod_cidr(&cidr)
            .map_err(|e| Status::invalid_argument(format!("network_config.pod_cidr: {e}")))?;
        let settings = NetworkSettings {
            pod_cidrs: pod_cidrs.clone(),
        };
        let store = self.shared.store.clone();
        let saved = settings.clone();
        tokio::task::spawn_blocking(move || saved.save(&store))
            .await
            .map_err(error::join)?
            .map_err(error::store)?;
        self.shared.pods.network().set_pod_cidrs(pod_cidrs);
        tracing::info!(pod_cidr = %cidr, "pod CIDR updated");
        Ok(Response::new(UpdateRuntimeConfigResponse {}))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<RunPodSandboxRequest>,
    ) -> Result<Response<RunPodSandboxResponse>, Status> {
        let r = request.into_inner();
        // The handler is recorded with the pod; its containers run on it.
        if self
            .shared
            .config
            .runtime
            .handler(&r.runtime_handler)
            .is_none()
        {
            return Err(Status::invalid_argument(format!(
                "unknown runtime handler {:?} (configured: {})",
                r.runtime_handler,
                self.shared
                    .config
                    .runtime
                    .handlers
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let spec = pod::spec_from(r.config, r.runtime_handler)?;
        // Never run a pod without the user namespace it asked for.
        if spec.userns.is_some()
            && !self
                .shared
                .containers
                .handler_supports_userns(&spec.runtime_handler)
        {
            return Err(Status::invalid_argument(format!(
                "runtime handler {:?} does not support user namespaces (its runtime's \"features\" \
                 list no \"user\" namespace): the pod asks for one (userns_options.mode = POD)",
                spec.runtime_handler
            )));
        }
        // Spawned: if kubelet gives up on the call, the sandbox is still
        // either fully set up or fully unwound, never left halfway.
        let shared = self.shared.clone();
        let started = Instant::now();
        let id = tokio::spawn(async move { shared.pods.run(spec).await })
            .await
            .map_err(error::join)?
            .map_err(error::pod)?;
        // The pod's start, split: the CNI ADD is the network phase, the
        // rest (namespaces, cgroup, shim, store) the sandbox phase.
        let total = started.elapsed();
        let network = self.shared.pods.network().take_add_time(&id);
        let health = &self.shared.health;
        if let Some(n) = network {
            health.phase(Phase::Network, n.as_secs_f64());
        }
        let sandbox = total.saturating_sub(network.unwrap_or_default());
        health.phase(Phase::Sandbox, sandbox.as_secs_f64());
        Ok(Response::new(RunPodSandboxResponse { pod_sandbox_id: id }))
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<StopPodSandboxRequest>,
    ) -> Result<Response<StopPodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let shared = self.shared.clone();
        tokio::spawn(async move {
            if let Some(full) = shared.pods.resolve_id(&id).map_err(error::pod)? {
                shared
                    .containers
                    .stop_pod(&full)
                    .await
                    .map_err(error::container)?;
            }
            shared.pods.stop(&id).await.map_err(error::pod)
        })
        .await
        .map_err(error::join)??;
        Ok(Response::new(StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<RemovePodSandboxRequest>,
    ) -> Result<Response<RemovePodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let shared = self.shared.clone();
        tokio::spawn(async move {
            if let Some(full) = shared.pods.resolve_id(&id).map_err(error::pod)? {
                let removed = shared
                    .containers
                    .remove_pod(&full)
                    .await
                    .map_err(error::container)?;
                leases::release(&shared.images, &removed)
                    .await
                    .map_err(error::image)?;
            }
            shared.pods.remove(&id).await.map_err(error::pod)
        })
        .await
        .map_err(error::join)??;
        Ok(Response::new(RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<PodSandboxStatusRequest>,
    ) -> Result<Response<PodSandboxStatusResponse>, Status> {
        let r = request.into_inner();
        let rec = self
            .shared
            .pods
            .status(&r.pod_sandbox_id)
            .map_err(error::pod)?;
        Ok(Response::new(pod::status(&rec, r.verbose)))
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<ListPodSandboxRequest>,
    ) -> Result<Response<ListPodSandboxResponse>, Status> {
        let filter = pod::filter_from(request.into_inner().filter);
        let items = self.shared.pods.list(&filter).map_err(error::pod)?;
        Ok(Response::new(ListPodSandboxResponse {
            items: items.iter().map(|r| pod::list_item(r)).collect(),
        }))
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        _request: Request<GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Ok(Response::new(Box::pin(events::stream(self.shared.clone()))))
    }

    async fn create_container(
        &self,
        request: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        let shared = self.shared.clone();
        let r = request.into_inner();
        // Spawned: a client giving up never leaves a half-created container.
        let started = Instant::now();
        let id = tokio::spawn(container::create(shared, r))
            .await
            .map_err(error::join)??;
        self.shared
            .health
            .phase(Phase::ContainerCreate, started.elapsed().as_secs_f64());
        Ok(Response::new(CreateContainerResponse { container_id: id }))
    }

    async fn start_container(
        &self,
        request: Request<StartContainerRequest>,
    ) -> Result<Response<StartContainerResponse>, Status> {
        let id = request.into_inner().container_id;
        let shared = self.shared.clone();
        let started = Instant::now();
        tokio::spawn(async move { shared.containers.start(&id).await })
            .await
            .map_err(error::join)?
            .map_err(error::container)?;
        self.shared
            .health
            .phase(Phase::ContainerStart, started.elapsed().as_secs_f64());
        Ok(Response::new(StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        request: Request<StopContainerRequest>,
    ) -> Result<Response<StopContainerResponse>, Status> {
        let r = request.into_inner();
        let timeout = container::timeout(r.timeout, "timeout")?;
        let shared = self.shared.clone();
        tokio::spawn(async move { shared.containers.stop(&r.container_id, timeout).await })
            .await
            .map_err(error::join)?
            .map_err(error::container)?;
        Ok(Response::new(StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        let id = request.into_inner().container_id;
        let shared = self.shared.clone();
        let removal = tokio::spawn(async move { shared.containers.remove(&id).await })
            .await
            .map_err(error::join)?
            .map_err(error::container)?;
        if let Some(removal) = removal {
            // Its image lease goes once its rootfs is gone, off the reply's
            // path.
            let shared = self.shared.clone();
            tokio::spawn(async move {
                if let Ok(rec) = removal.finished().await
                    && let Err(e) = leases::release(&shared.images, &[rec]).await
                {
                    tracing::warn!(error = %e, "releasing a removed container's image lease");
                }
            });
        }
        Ok(Response::new(RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let filter = container::filter_from(request.into_inner().filter);
        let items = self
            .shared
            .containers
            .list(&filter)
            .map_err(error::container)?;
        Ok(Response::new(ListContainersResponse {
            containers: items.iter().map(|r| container::list_item(r)).collect(),
        }))
    }

    async fn container_status(
        &self,
        request: Request<ContainerStatusRequest>,
    ) -> Result<Response<ContainerStatusResponse>, Status> {
        let r = request.into_inner();
        let rec = self
            .shared
            .containers
            .status(&r.container_id)
            .map_err(error::container)?;
        Ok(Response::new(container::status(
            &self.shared,
            &rec,
            r.verbose,
        )))
    }

    async fn update_container_resources(
        &self,
        request: Request<UpdateContainerResourcesRequest>,
    ) -> Result<Response<UpdateContainerResourcesResponse>, Status> {
        let r = request.into_inner();
        let linux = r.linux.ok_or_else(|| error::missing("linux"))?;
        let shared = self.shared.clone();
        let id = r.container_id.clone();
        tokio::spawn(async move {
            shared
                .containers
                .update_resources(&r.container_id, &linux)
                .await
        })
        .await
        .map_err(error::join)?
        .map_err(error::container)?;
        // The stats tick reads limits on its slow clock: this one now.
        self.shared.stats.settings_changed(&id);
        Ok(Response::new(UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        request: Request<ReopenContainerLogRequest>,
    ) -> Result<Response<ReopenContainerLogResponse>, Status> {
        let id = request.into_inner().container_id;
        self.shared
            .containers
            .reopen_log(&id)
            .await
            .map_err(error::container)?;
        Ok(Response::new(ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        request: Request<ExecSyncRequest>,
    ) -> Result<Response<ExecSyncResponse>, Status> {
        let r = request.into_inner();
        let timeout = container::timeout(r.timeout, "timeout")?;
        let out = self
            .shared
            .containers
            .exec_sync(&r.container_id, &r.cmd, timeout)
            .await
            .map_err(error::container)?;
        Ok(Response::new(ExecSyncResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
        }))
    }

    async fn exec(&self, request: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
        super::streaming::exec(&self.shared, request.into_inner()).map(Response::new)
    }

    async fn attach(
        &self,
        request: Request<AttachRequest>,
    ) -> Result<Response<AttachResponse>, Status> {
        super::streaming::attach(&self.shared, request.into_inner()).map(Response::new)
    }

    async fn port_forward(
        &self,
        request: Request<PortForwardRequest>,
    ) -> Result<Response<PortForwardResponse>, Status> {
        super::streaming::port_forward(&self.shared, request.into_inner()).map(Response::new)
    }

    async fn container_stats(
        &self,
        request: Request<ContainerStatsRequest>,
    ) -> Result<Response<ContainerStatsResponse>, Status> {
        let id = request.into_inner().container_id;
        let rec = self
            .shared
            .containers
            .status(&id)
            .map_err(error::container)?;
        let shared = self.shared.clone();
        let stats = blocking(move || stats::container(&shared, &rec)).await?;
        Ok(Response::new(ContainerStatsResponse { stats: Some(stats) }))
    }

    async fn list_container_stats(
        &self,
        request: Request<ListContainerStatsRequest>,
    ) -> Result<Response<ListContainerStatsResponse>, Status> {
        let filter = request.into_inner().filter;
        let shared = self.shared.clone();
        let stats = blocking(move || stats::list_containers(&shared, filter)).await??;
        Ok(Response::new(ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<PodSandboxStatsRequest>,
    ) -> Result<Response<PodSandboxStatsResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let rec = self.shared.pods.status(&id).map_err(error::pod)?;
        let shared = self.shared.clone();
        let stats = blocking(move || stats::pod(&shared, &rec)).await??;
        Ok(Response::new(PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<ListPodSandboxStatsRequest>,
    ) -> Result<Response<ListPodSandboxStatsResponse>, Status> {
        let filter = request.into_inner().filter;
        let shared = self.shared.clone();
        let stats = blocking(move || stats::list_pods(&shared, filter)).await??;
        Ok(Response::new(ListPodSandboxStatsResponse { stats }))
    }

    async fn checkpoint_container(
        &self,
        _request: Request<CheckpointContainerRequest>,
    ) -> Result<Response<CheckpointContainerResponse>, Status> {
        Err(error::not_implemented("CheckpointContainer"))
    }

    async fn list_metric_descriptors(
        &self,
        _request: Request<ListMetricDescriptorsRequest>,
    ) -> Result<Response<ListMetricDescriptorsResponse>, Status> {
        Ok(Response::new(ListMetricDescriptorsResponse {
            descriptors: podmetrics::descriptors(),
        }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _request: Request<ListPodSandboxMetricsRequest>,
    ) -> Result<Response<ListPodSandboxMetricsResponse>, Status> {
        let shared = self.shared.clone();
        let pod_metrics = blocking(move || podmetrics::list(&shared)).await??;
        Ok(Response::new(ListPodSandboxMetricsResponse { pod_metrics }))
    }
}
