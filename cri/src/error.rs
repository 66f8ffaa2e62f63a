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
