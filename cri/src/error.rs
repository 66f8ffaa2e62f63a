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

/// A failure of the node's filesystem: a full disk or quota is
/// ResourceExhausted (kubelet and an operator can act on it), anything
/// else Internal.
fn io_status(e: &std::io::Error, msg: String) -> Status {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => Status::resource_exhausted(msg),
        _ => Status::internal(msg),
    }
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
        E::PortInUse(_) => Status::failed_precondition(msg),
        E::NotFound(_) => Status::not_found(msg),
        E::Network(berth_pod::NetworkError::NotReady(_)) => Status::failed_precondition(msg),
        E::Network(berth_pod::NetworkError::Invalid(_)) => Status::invalid_argument(msg),
        E::Network(berth_pod::NetworkError::Failed(_)) => Status::internal(msg),
        E::Files(source) | E::Cgroup { source, .. } => io_status(&source, msg),
        E::Namespaces(_) => Status::internal(msg),
        E::Store(s) => store(s),
    }
}

/// Container errors: the client's mistakes as InvalidArgument, NotFound,
/// AlreadyExists or FailedPrecondition (what kubelet acts on), berth's or
/// the node's failures as Internal.
pub fn container(e: berth_containers::RuntimeError) -> Status {
    use berth_containers::RuntimeError as E;
    use berth_shim::proto::ErrorKind as K;
    let msg = e.to_string();
    match e {
        E::NoHandler(_)
        | E::IdRequired
        | E::AmbiguousId(_)
        | E::BadLogPath { .. }
        | E::ProtectedMount { .. }
        | E::EmptyCommand
        | E::ShimRefused {
            kind: K::Invalid, ..
        } => Status::invalid_argument(msg),
        E::Spec(s) if s.is_invalid_argument() => Status::invalid_argument(msg),
        E::NameTaken { .. } => Status::already_exists(msg),
        E::NotFound(_) => Status::not_found(msg),
        E::PodNotReady(_)
        | E::WrongState { .. }
        | E::HandlerMissing { .. }
        | E::ShimMissing(_)
        | E::ShimRefused {
            kind: K::InvalidState | K::AlreadyExists | K::NotFound,
            ..
        } => Status::failed_precondition(msg),
        E::ExecTimedOut { .. } => Status::deadline_exceeded(msg),
        E::Store(s) => store(s),
        E::Io { source, .. } => {
            tracing::warn!(error = %msg, "container call failed");
            io_status(&source, msg)
        }
        E::Spec(_)
        | E::Config { .. }
        | E::Runtime { .. }
        | E::ShimRefused {
            kind: K::Runtime | K::Io,
            ..
        }
        | E::Shim { .. }
        | E::Unkillable { .. }
        | E::Corrupt { .. }
        | E::ImageVolumes(_)
        | E::Task(_) => {
            tracing::warn!(error = %msg, "container call failed");
            Status::internal(msg)
        }
    }
}
