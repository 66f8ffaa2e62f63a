//! The one place domain errors become gRPC statuses.

use berth_store::StoreError;
use tonic::Status;

/// An RPC whose capability has not landed: kubelet sees UNIMPLEMENTED,
/// never a fake success.
pub fn not_implemented(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented by this berth version"))
}

/// A required request field was not sent.
pub fn missing(field: &str) -> Status {
    Status::invalid_argument(format!("{field} is required"))
}

pub fn store(e: StoreError) -> Status {
    tracing::error!(error = %e, "metadata store failure");
    Status::internal(e.to_string())
}

/// A blocking task panicked or was cancelled.
pub fn join(e: tokio::task::JoinError) -> Status {
    Status::internal(format!("internal task failed: {e}"))
}

/// Image errors, with the codes kubelet and operators can act on.
pub fn image(e: berth_image::ImageError) -> Status {
    use berth_image::ImageError as E;
    let msg = e.to_string();
    match e {
        E::InvalidReference(_) => Status::invalid_argument(msg),
        E::NotFound(_) => Status::not_found(msg),
        E::Unauthenticated { .. } => Status::unauthenticated(msg),
        E::PermissionDenied { .. } => Status::permission_denied(msg),
        E::Unavailable { .. } => Status::unavailable(msg),
        E::Unsupported(_) => Status::invalid_argument(msg),
        E::DigestMismatch { .. } => Status::data_loss(msg),
        E::BadLayer { .. } => Status::invalid_argument(msg),
        E::NoSpace { .. } => Status::resource_exhausted(msg),
        E::Config(_) => Status::failed_precondition(msg),
        E::Storage(_) => Status::internal(msg),
        E::Store(s) => store(s),
    }
}

/// Pod sandbox errors.
pub fn pod(e: berth_pod::PodError) -> Status {
    use berth_pod::PodError as E;
    let msg = e.to_string();
    match e {
        E::InvalidArgument(_) => Status::invalid_argument(msg),
        E::AlreadyExists { .. } => Status::already_exists(msg),
        E::NotFound(_) => Status::not_found(msg),
        E::Network(_) => Status::unknown(msg),
        E::Namespaces(_) | E::Cgroup { .. } | E::Files(_) => Status::internal(msg),
        E::Store(s) => store(s),
    }
}

/// Container errors.
pub fn container(e: berth_containers::RuntimeError) -> Status {
    use berth_containers::RuntimeError as E;
    let msg = e.to_string();
    match e {
        E::InvalidArgument(_) => Status::invalid_argument(msg),
        E::AlreadyExists { .. } => Status::already_exists(msg),
        E::NotFound(_) => Status::not_found(msg),
        E::FailedPrecondition(_) => Status::failed_precondition(msg),
        E::DeadlineExceeded(_) => Status::deadline_exceeded(msg),
        E::Runtime(_) | E::Shim { .. } | E::Io { .. } => Status::unknown(msg),
        E::Store(s) => store(s),
    }
}
