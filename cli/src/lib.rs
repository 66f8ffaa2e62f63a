//! The `berth` command-line client's library half: endpoint resolution (so
//! operators' crictl config just works), a CRI connection over a unix
//! socket, output formatting, crictl-style container configs and CRI log
//! files. The e2e tests and the benchmark harness
//! use the same connection code.

pub mod client;
pub mod container_config;
pub mod endpoint;
pub mod logs;
pub mod output;
