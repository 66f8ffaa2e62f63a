//! The `berth` subcommands, one module per area.

pub mod image;
pub mod pod;
pub mod runtime;

/// A gRPC error as one line.
pub fn status_msg(s: tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}
