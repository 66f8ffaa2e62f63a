//! The `berth` subcommands, one module per area.

pub mod container;
pub mod image;
pub mod pod;
pub mod runtime;
pub mod stats;
pub mod stream;

/// A gRPC error as one line.
pub fn status_msg(s: tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

/// What a command leaves for `main`: text for stdout, then the process exit
/// code. Most commands only print (code 0, errors are `Err`); `exec-sync`
/// passes on its process's exit code.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub out: String,
    pub code: u8,
}
