//! What the server needs from the runtime: a process to stream (an exec,
//! or a container to attach to) and TCP connections inside a pod. berthd
//! implements [`Backend`] over its containers and pods; the server knows
//! nothing else about them.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use serde::Deserialize;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// A boxed future, as the backend's handles return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// A chunk of a process's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stream: OutputStream,
    pub data: Bytes,
}

/// A terminal's size, as the resize stream carries it
/// (`{"Width":80,"Height":24}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// How a streamed process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this status (128 + signal when killed).
    Exited(i32),
    /// The streams ended without an exit status (an attach whose
    /// container stopped or whose stream the runtime dropped).
    Closed,
}

/// A running process's lifetime, beside its streams.
pub trait Control: Send {
    /// Resolves when the process has ended. Its output channel is closed
    /// by then or shortly after (what it wrote before it ended is in it).
    fn wait(&mut self) -> BoxFuture<'_, Result<Ended, String>>;
    /// The client went away: an exec'd process is killed; an attach only
    /// detaches.
    fn abort(&mut self) -> BoxFuture<'_, ()>;
}

/// Resizes a process's terminal.
pub type Resizer = Box<dyn Fn(TerminalSize) + Send + Sync>;

/// A process to stream.
pub struct Process {
    /// Where the client's stdin goes; dropping it closes the process's
    /// stdin (end of file).
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Its output, in order; closed when no more will come. Bounded, so a
    /// slow client slows the reading of the process's pipes, nothing else.
    pub output: mpsc::Receiver<Output>,
    /// Set for a process with a terminal.
    pub resize: Option<Resizer>,
    pub control: Box<dyn Control>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("stdin", &self.stdin.is_some())
            .field("tty", &self.resize.is_some())
            .finish_non_exhaustive()
    }
}

/// Why the backend could not do what a URL was issued for; the message
/// goes to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The container or pod is gone.
    #[error("{0}")]
    NotFound(String),
    /// It exists but cannot do this now (a container not running).
    #[error("{0}")]
    NotReady(String),
    /// Nothing listens on the port, or the connection failed.
    #[error("{0}")]
    Connect(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

/// The runtime behind the server.
pub trait Backend: Send + Sync + 'static {
    /// Starts `cmd` in a running container.
    fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        tty: bool,
        stdin: bool,
    ) -> impl Future<Output = Result<Process, BackendError>> + Send;

    /// Attaches to a running container's main process.
    fn attach(
        &self,
        container_id: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> impl Future<Output = Result<Process, BackendError>> + Send;

    /// Connects to `port` on the pod's loopback, inside its network
    /// namespace.
    fn connect(
        &self,
        pod_id: &str,
        port: u16,
    ) -> impl Future<Output = Result<TcpStream, BackendError>> + Send;
}
