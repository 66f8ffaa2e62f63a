//! What the streaming server runs on: execs and attaches through the
//! pod's shim (`berth_containers`), port-forward connections made inside
//! the pod's network namespace.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Weak};

use berth_streaming::backend::{
    Backend, BackendError, BoxFuture, Control, Ended, Process, TerminalSize,
};
use berth_streaming::fdio::{self, FdWriter};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::service::Shared;

/// The streaming server's view of berthd.
#[derive(Debug)]
pub struct CriBackend {
    shared: Weak<Shared>,
}

impl CriBackend {
    pub fn new(shared: &Arc<Shared>) -> CriBackend {
        CriBackend {
            shared: Arc::downgrade(shared),
        }
    }

    fn shared(&self) -> Result<Arc<Shared>, BackendError> {
        self.shared
            .upgrade()
            .ok_or_else(|| BackendError::Internal("berthd is shutting down".into()))
    }
}

fn container_error(e: berth_containers::RuntimeError) -> BackendError {
    use berth_containers::RuntimeError as E;
    match e {
        E::NotFound(_) => BackendError::NotFound(e.to_string()),
        E::WrongState { .. } => BackendError::NotReady(e.to_string()),
        _ => BackendError::Internal(e.to_string()),
    }
}

/// An exec's lifetime, from its shim connection.
struct ExecControl {
    session: berth_containers::stream::ExecControl,
    exited: watch::Sender<bool>,
}

impl Control for ExecControl {
    fn wait(&mut self) -> BoxFuture<'_, Result<Ended, String>> {
        Box::pin(async move {
            let res = self.session.wait().await;
            // The readers take what the pipes hold now, and stop.
            let _ = self.exited.send(true);
            res.map(Ended::Exited).map_err(|e| e.to_string())
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = self.session.kill(libc::SIGKILL).await {
                tracing::debug!(error = %e, "streaming: killing an abandoned exec");
            }
            let _ = self.exited.send(true);
        })
    }
}

/// An attach's stdin: its end (the client closed stdin) is also told to
/// the shim, which closes a `stdin_once` container's stdin then.
struct StdinEnd {
    inner: Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
    ended: Option<tokio::sync::oneshot::Sender<()>>,
}

impl tokio::io::AsyncWrite for StdinEnd {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let res = std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_shutdown(cx));
        if let Some(tx) = self.ended.take() {
            let _ = tx.send(());
        }
        std::task::Poll::Ready(res)
    }
}

/// An attach's lifetime: it ends when its output does.
struct AttachControl {
    done: watch::Receiver<bool>,
}

impl Control for AttachControl {
    fn wait(&mut self) -> BoxFuture<'_, Result<Ended, String>> {
        Box::pin(async move {
            let _ = self.done.wait_for(|d| *d).await;
            Ok(Ended::Closed)
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, ()> {
        // Detaching is dropping the connection: nothing to kill.
        Box::pin(async {})
    }
}

fn writer(
    fd: std::os::fd::OwnedFd,
) -> Result<Box<dyn tokio::io::AsyncWrite + Send + Unpin>, BackendError> {
    FdWriter::new(fd)
        .map(|w| Box::new(w) as _)
        .map_err(|e| BackendError::Internal(format!("watching the process's stdin: {e}")))
}

fn resizer(pty: std::os::fd::OwnedFd) -> berth_streaming::backend::Resizer {
    Box::new(move |size: TerminalSize| {
        if let Err(e) = berth_containers::stream::resize(&pty, size.width, size.height) {
            tracing::debug!(error = %e, "streaming: resizing a terminal");
        }
    })
}

impl Backend for CriBackend {
    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        tty: bool,
        stdin: bool,
    ) -> Result<Process, BackendError> {
        let shared = self.shared()?;
        let s = shared
            .containers
            .exec_stream(container_id, cmd, tty, stdin)
            .await
            .map_err(container_error)?;
        let (exited_tx, exited_rx) = watch::channel(false);
        let dup = |fd: &std::os::fd::OwnedFd| {
            fd.try_clone()
                .map_err(|e| BackendError::Internal(format!("duplicating a terminal: {e}")))
        };
        let (stdin_w, output, resize) = match s.pty {
            Some(pty) => {
                let stdin_w = if stdin {
                    Some(Box::new(fdio::TerminalInput::new(writer(dup(&pty)?)?))
                        as Box<dyn tokio::io::AsyncWrite + Send + Unpin>)
                } else {
                    None
                };
                let reader = dup(&pty)?;
                (
                    stdin_w,
                    fdio::pump(Some(reader), None, exited_rx),
                    Some(resizer(pty)),
                )
            }
            None => (
                s.stdin.map(writer).transpose()?,
                fdio::pump(s.stdout, s.stderr, exited_rx),
                None,
            ),
        };
        Ok(Process {
            stdin: stdin_w,
            output,
            resize,
            control: Box::new(ExecControl {
                session: s.control,
                exited: exited_tx,
            }),
        })
    }

    async fn attach(
        &self,
        container_id: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<Process, BackendError> {
        let shared = self.shared()?;
        let mut a = shared
            .containers
            .attach(container_id, stdin, stdout, stderr)
            .await
            .map_err(container_error)?;
        let (done_tx, done_rx) = watch::channel(false);
        let (tx, output) = tokio::sync::mpsc::channel(16);
        let (stdin_ended_tx, mut stdin_ended) = tokio::sync::oneshot::channel();
        let (stdin_w, resize) = match a.stdin.take() {
            Some(fd) if a.tty => {
                let w = writer(fd.try_clone().map_err(|e| {
                    BackendError::Internal(format!("duplicating a terminal: {e}"))
                })?)?;
                (Some(w), Some(resizer(fd)))
            }
            Some(fd) => (
                Some(Box::new(StdinEnd {
                    inner: writer(fd)?,
                    ended: Some(stdin_ended_tx),
                })
                    as Box<dyn tokio::io::AsyncWrite + Send + Unpin>),
                None,
            ),
            None => (None, None),
        };
        tokio::spawn(async move {
            let mut stdin_seen = false;
            loop {
                let next = tokio::select! {
                    next = a.next_output() => next,
                    ended = &mut stdin_ended, if !stdin_seen => {
                        stdin_seen = true;
                        // stdin_once containers close their stdin now.
                        if ended.is_ok()
                            && let Err(e) = a.close_stdin().await
                        {
                            tracing::debug!(error = %e, "streaming: attach stdin end");
                        }
                        continue;
                    }
                };
                let Some((stream, data)) = next else { break };
                let stream = match stream {
                    berth_containers::stream::Stream::Stdout => {
                        berth_streaming::backend::OutputStream::Stdout
                    }
                    berth_containers::stream::Stream::Stderr => {
                        berth_streaming::backend::OutputStream::Stderr
                    }
                };
                if tx
                    .send(berth_streaming::backend::Output { stream, data })
                    .await
                    .is_err()
                {
                    break;
                }
            }
            let _ = done_tx.send(true);
        });
        Ok(Process {
            stdin: stdin_w,
            output,
            resize,
            control: Box::new(AttachControl { done: done_rx }),
        })
    }

    async fn connect(&self, pod_id: &str, port: u16) -> Result<TcpStream, BackendError> {
        let shared = self.shared()?;
        let pod = shared
            .pods
            .status(pod_id)
            .map_err(|e| BackendError::NotFound(e.to_string()))?;
        // 127.0.0.1 first, then ::1 (as `localhost` resolves).
        let mut last = None;
        for v6 in [false, true] {
            let addr = if v6 {
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port)
            } else {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)
            };
            let res = match &pod.netns {
                Some(ns) => {
                    let ns = ns.clone();
                    let sock =
                        tokio::task::spawn_blocking(move || berth_pod::ns::tcp_socket_in(&ns, v6))
                            .await
                            .map_err(|e| BackendError::Internal(e.to_string()))?
                            .map_err(|e| {
                                BackendError::Internal(format!(
                                    "a socket in the pod's network: {e}"
                                ))
                            })?;
                    tokio::net::TcpSocket::from_std_stream(sock)
                        .connect(addr)
                        .await
                }
                // A host-network pod: the node's loopback.
                None => TcpStream::connect(addr).await,
            };
            match res {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(BackendError::Connect(match last {
            Some(e) => format!("connecting to localhost:{port}: {e}"),
            None => format!("connecting to localhost:{port}"),
        }))
    }
}
