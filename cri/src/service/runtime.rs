//! CRI RuntimeService. Version, Status, RuntimeConfig and
//! UpdateRuntimeConfig work; every other RPC answers UNIMPLEMENTED until its
//! capability lands.

use std::pin::Pin;
use std::sync::Arc;

use k8s_cri::v1::runtime_service_server::RuntimeService;
use k8s_cri::v1::*;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::{Shared, not_implemented, pod};
use crate::error;
use crate::settings::NetworkSettings;

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
            berth_pod::CgroupDriver::Cgroupfs => CgroupDriver::Cgroupfs,
            berth_pod::CgroupDriver::Systemd => CgroupDriver::Systemd,
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
        let settings = NetworkSettings { pod_cidrs };
        let store = self.shared.store.clone();
        let saved = settings.clone();
        tokio::task::spawn_blocking(move || saved.save(&store))
            .await
            .map_err(error::join)?
            .map_err(error::store)?;
        tracing::info!(pod_cidr = %cidr, "pod CIDR updated");
        Ok(Response::new(UpdateRuntimeConfigResponse {}))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<RunPodSandboxRequest>,
    ) -> Result<Response<RunPodSandboxResponse>, Status> {
        let r = request.into_inner();
        let spec = pod::spec_from(r.config, r.runtime_handler)?;
        // Spawned: if kubelet gives up on the call, the sandbox is still
        // either fully set up or fully unwound, never left halfway.
        let shared = self.shared.clone();
        let id = tokio::spawn(async move { shared.pods.run(spec).await })
            .await
            .map_err(error::join)?
            .map_err(error::pod)?;
        Ok(Response::new(RunPodSandboxResponse { pod_sandbox_id: id }))
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<StopPodSandboxRequest>,
    ) -> Result<Response<StopPodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let shared = self.shared.clone();
        tokio::spawn(async move { shared.pods.stop(&id).await })
            .await
            .map_err(error::join)?
            .map_err(error::pod)?;
        Ok(Response::new(StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<RemovePodSandboxRequest>,
    ) -> Result<Response<RemovePodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let shared = self.shared.clone();
        tokio::spawn(async move { shared.pods.remove(&id).await })
            .await
            .map_err(error::join)?
            .map_err(error::pod)?;
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
            items: items.iter().map(pod::list_item).collect(),
        }))
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        _request: Request<GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Err(error::not_implemented("GetContainerEvents"))
    }

    not_implemented! {
        create_container: CreateContainerRequest => CreateContainerResponse, "CreateContainer";
        start_container: StartContainerRequest => StartContainerResponse, "StartContainer";
        stop_container: StopContainerRequest => StopContainerResponse, "StopContainer";
        remove_container: RemoveContainerRequest => RemoveContainerResponse, "RemoveContainer";
        list_containers: ListContainersRequest => ListContainersResponse, "ListContainers";
        container_status: ContainerStatusRequest => ContainerStatusResponse, "ContainerStatus";
        update_container_resources: UpdateContainerResourcesRequest => UpdateContainerResourcesResponse, "UpdateContainerResources";
        reopen_container_log: ReopenContainerLogRequest => ReopenContainerLogResponse, "ReopenContainerLog";
        exec_sync: ExecSyncRequest => ExecSyncResponse, "ExecSync";
        exec: ExecRequest => ExecResponse, "Exec";
        attach: AttachRequest => AttachResponse, "Attach";
        port_forward: PortForwardRequest => PortForwardResponse, "PortForward";
        container_stats: ContainerStatsRequest => ContainerStatsResponse, "ContainerStats";
        list_container_stats: ListContainerStatsRequest => ListContainerStatsResponse, "ListContainerStats";
        pod_sandbox_stats: PodSandboxStatsRequest => PodSandboxStatsResponse, "PodSandboxStats";
        list_pod_sandbox_stats: ListPodSandboxStatsRequest => ListPodSandboxStatsResponse, "ListPodSandboxStats";
        checkpoint_container: CheckpointContainerRequest => CheckpointContainerResponse, "CheckpointContainer";
        list_metric_descriptors: ListMetricDescriptorsRequest => ListMetricDescriptorsResponse, "ListMetricDescriptors";
        list_pod_sandbox_metrics: ListPodSandboxMetricsRequest => ListPodSandboxMetricsResponse, "ListPodSandboxMetrics";
    }
}
