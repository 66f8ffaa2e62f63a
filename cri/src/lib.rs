//! berth's CRI surface and daemon: configuration, the CRI services over the
//! domain crates, the unix socket, startup and shutdown. Domain errors are
//! mapped to gRPC statuses here and nowhere else (`error`).

pub mod callmetrics;
pub mod config;
pub mod daemon;
mod error;
pub mod exporter;
pub mod inflight;
pub mod layerusage;
pub mod leases;
pub mod lock;
pub mod logging;
pub mod memory;
pub mod network;
pub mod notify;
pub mod quantity;
pub mod service;
pub mod settings;
pub mod socket;
pub mod stats;
pub mod streambackend;
pub mod validate;
