//! The `berth` command-line client's library half: endpoint resolution (so
//! operators' crictl config just works), a CRI connection over a unix
//! socket, and output formatting. The e2e tests and the benchmark harness
//! use the same connection code.

pub mod client;
pub mod endpoint;
pub mod output;
