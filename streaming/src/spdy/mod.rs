//! SPDY/3.1 (SPDY Protocol Draft 3.1), as Kubernetes' remote command and
//! port-forward protocols use it.
//!
//! - [`frame`]: the wire format: every SPDY/3 frame type, parsed from and
//!   serialized to bytes, and an incremental [`frame::Decoder`] with frame
//!   size limits.
//! - [`headers`]: name/value header blocks, compressed with zlib and the
//!   SPDY/3 dictionary, one stateful context per direction.
//! - [`session`]: a connection in the server or the client role, streams as
//!   tokio `AsyncRead`/`AsyncWrite`, flow control that also works with peers
//!   that do none (Go's `moby/spdystream`, which kubelet and crictl use).
//!
//! The HTTP/1.1 `Upgrade: SPDY/3.1` handshake is not part of this module: a
//! session starts on the already upgraded byte stream.

pub mod frame;
pub mod headers;
pub mod session;

#[cfg(test)]
mod session_tests;

pub use frame::{Frame, FrameError, GoAwayStatus, RstStatus};
pub use headers::{HeaderError, Headers};
pub use session::{
    Handle, Incoming, Limits, RecvStream, Role, SendStream, SessionError, Stream, client, server,
};
