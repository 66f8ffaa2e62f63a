//! berth's streaming server: the URLs the CRI's Exec, Attach and
//! PortForward calls return, and the protocols kubelet, kubectl and crictl
//! speak on them (remote command and port-forward, over SPDY/3.1 and
//! WebSocket).

pub mod backend;
pub mod client;
pub mod config;
pub mod fdio;
pub mod portforward;
pub mod remotecommand;
pub mod server;
pub mod spdy;
mod spdyserve;
pub mod status;
pub mod tokens;
pub mod ws;

pub use backend::{Backend, BackendError, Process};
pub use config::Config;
pub use server::{Bound, Streaming, bind, serve};
pub use tokens::{StreamRequest, Tokens};
