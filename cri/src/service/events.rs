//! GetContainerEvents: the containers crate's lifecycle events as the
//! stream kubelet's evented PLEG reads, each with the pod's status and its
//! containers' statuses as they are when the event is sent.

use std::sync::Arc;

use berth_containers::events::{Event, EventKind};
use k8s_cri::v1 as cri;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::{Shared, container, pod};

fn kind(k: EventKind) -> cri::ContainerEventType {
    match k {
        EventKind::Created => cri::ContainerEventType::ContainerCreatedEvent,
        EventKind::Started => cri::ContainerEventType::ContainerStartedEvent,
        EventKind::Stopped => cri::ContainerEventType::ContainerStoppedEvent,
        EventKind::Deleted => cri::ContainerEventType::ContainerDeletedEvent,
    }
}

fn response(shared: &Shared, e: Event) -> cri::ContainerEventResponse {
    let pod_sandbox_status = shared
        .pods
        .status(&e.pod_id)
        .ok()
        .and_then(|rec| pod::status(&rec, false).status);
    let containers_statuses = shared
        .containers
        .of_pod(&e.pod_id)
        .unwrap_or_default()
        .iter()
        .filter_map(|c| container::status(shared, c, false).status)
        .collect();
    cri::ContainerEventResponse {
        container_id: e.container_id,
        container_event_type: kind(e.kind) as i32,
        created_at: e.at,
        pod_sandbox_status,
        containers_statuses,
    }
}

/// A subscriber's stream: every event from now on (and those nobody heard
/// while no one listened), in order, until the client goes away.
pub fn stream(
    shared: Arc<Shared>,
) -> impl tokio_stream::Stream<Item = Result<cri::ContainerEventResponse, tonic::Status>> + Send + 'static
{
    let rx = shared.containers.events().subscribe();
    UnboundedReceiverStream::new(rx).map(move |e| Ok(response(&shared, e)))
}
