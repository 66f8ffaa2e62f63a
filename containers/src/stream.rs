//! Streaming exec and attach, berthd's side: the process's (or the
//! container's) stdio as descriptors handed over by the pod's shim, for
//! the streaming server to copy to and from its client.
//!
//! - [`Containers::exec_stream`]: the shim runs the runtime's `exec
//!   --detach` and sends the process's stdin write end (when asked) and
//!   stdout/stderr read ends, or its pty master; the connection then
//!   carries the exit ([`ExecControl::wait`]) and kill requests
//!   ([`ExecControl::kill`]). Dropping the session without waiting leaves
//!   the process running: the shim drains its output and reaps it.
//! - [`Containers::attach`]: the container's live output as frames on the
//!   connection ([`AttachSession::next_output`]) and its stdin (a pipe's
//!   write end, or the pty master of a TTY container) as a descriptor.
//!   Dropping the session detaches.
//!
//! The descriptors are close-on-exec and non-blocking: wrap them in
//! [`AsyncStdio`] (tokio `AsyncRead` + `AsyncWrite`), or in
//! `tokio::io::unix::AsyncFd` directly. A pipe's write end is closed (the
//! process sees end of file) when every copy is dropped: berthd holds the
//! only one. No call here takes a container's lifecycle lock: stream I/O
//! may last hours and must not hold up stop or remove.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use berth_shim::proto::{self, ErrorKind, Request, Response, StreamFd};
use berth_util::id::new_id;
use bytes::{Buf, Bytes, BytesMut};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::UnixStream;

use crate::error::RuntimeError;
use crate::record::State;
use crate::rootfs::Layout;
use crate::service::{Containers, read_json};

/// How long the shim may take to start the process (its runtime call is
/// bounded at 30 s) or to answer an attach.
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest attach frame accepted (the shim sends at most 16 KiB).
const MAX_FRAME: usize = 1 << 20;

/// A process started by [`Containers::exec_stream`]. Without a terminal:
/// `stdin` (when asked), `stdout`, `stderr`; with one: `pty` only.
#[derive(Debug)]
pub struct ExecSession {
    /// The process's pid (host pid namespace).
    pub pid: u32,
    /// Write end of its stdin pipe; drop it for end of file.
    pub stdin: Option<OwnedFd>,
    /// Read end of its stdout pipe.
    pub stdout: Option<OwnedFd>,
    /// Read end of its stderr pipe.
    pub stderr: Option<OwnedFd>,
    /// The pty master: written for stdin, read for the output (EIO once
    /// the process is gone, which [`AsyncStdio`] reads as end of file);
    /// [`resize`] sets its window size.
    pub pty: Option<OwnedFd>,
    pub control: ExecControl,
}

/// The exec's connection to the shim: its exit, kill requests.
#[derive(Debug)]
pub struct ExecControl {
    pod_id: String,
    conn: UnixStream,
    buf: Vec<u8>,
    exit: Option<i32>,
}

impl ExecControl {
    /// Waits for the process's exit: its status, 128 + the signal number
    /// when a signal killed it. Cancel-safe (nothing read is lost when the
    /// future is dropped), so it can sit in a `select!` beside
    /// [`kill`](Self::kill). Returns the same code when called again.
    pub async fn wait(&mut self) -> Result<i32, RuntimeError> {
        if let Some(code) = self.exit {
            return Ok(code);
        }
        loop {
            if let Some(p) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=p).collect();
                return match serde_json::from_slice::<Response>(&line[..p]) {
                    Ok(Response::ExecExited { exit_code, .. }) => {
                        self.exit = Some(exit_code);
                        Ok(exit_code)
                    }
                    Ok(Response::Error { kind, message }) => {
                        Err(RuntimeError::from_shim(kind, message))
                    }
                    Ok(other) => Err(RuntimeError::unexpected(&self.pod_id, other)),
                    Err(e) => Err(self.shim_error(format!("bad exec answer: {e}"))),
                };
            }
            let mut chunk = [0u8; 512];
            match self.conn.read(&mut chunk).await {
                Ok(0) => {
                    return Err(
                        self.shim_error("closed the exec connection before the exit".into())
                    );
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(self.shim_error(format!("reading the exec's exit: {e}"))),
            }
        }
    }

    /// Sends `signal` to the exec'd process (not its children). Once it
    /// exited this does nothing.
    pub async fn kill(&mut self, signal: i32) -> Result<(), RuntimeError> {
        if !(1..=64).contains(&signal) {
            return Err(RuntimeError::ShimRefused {
                kind: ErrorKind::Invalid,
                message: format!("invalid signal {signal}"),
            });
        }
        if self.exit.is_some() {
            return Ok(());
        }
        let mut line = serde_json::to_vec(&proto::ExecControl::Kill { signal })
            .map_err(|e| self.shim_error(e.to_string()))?;
        line.push(b'\n');
        match self.conn.write_all(&line).await {
            Ok(()) => Ok(()),
            // The shim closes the connection after the exit: gone already.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(self.shim_error(format!("sending kill: {e}"))),
        }
    }

    /// The exit code, once [`wait`](Self::wait) returned it.
    pub fn exit_code(&self) -> Option<i32> {
        self.exit
    }

    fn shim_error(&self, message: String) -> RuntimeError {
        RuntimeError::Shim {
            pod_id: self.pod_id.clone(),
            message,
        }
    }
}

/// Which output stream an attach frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// An attach to a running container ([`Containers::attach`]).
#[derive(Debug)]
pub struct AttachSession {
    /// The container has a terminal: its output is all `Stdout`, and
    /// `stdin` is (a copy of) its pty master: write only, never read it
    /// (the shim reads the output for the log).
    pub tty: bool,
    /// The container's stdin, when asked for and kept open (CRI `stdin`).
    pub stdin: Option<OwnedFd>,
    pod_id: String,
    conn: UnixStream,
    buf: BytesMut,
}

impl AttachSession {
    /// The client's stdin ended: for a `stdin_once` container whose stdin
    /// this attach took, the shim closes the container's stdin now
    /// (output keeps coming). Cancel-safe enough: a line is written whole
    /// or the connection is gone.
    pub async fn close_stdin(&mut self) -> Result<(), RuntimeError> {
        let mut line = serde_json::to_vec(&proto::ExecControl::CloseStdin).map_err(|e| {
            RuntimeError::Shim {
                pod_id: self.pod_id.clone(),
                message: e.to_string(),
            }
        })?;
        line.push(b'\n');
        self.conn
            .write_all(&line)
            .await
            .map_err(|e| RuntimeError::Shim {
                pod_id: self.pod_id.clone(),
                message: format!("attach connection: {e}"),
            })
    }

    /// The next chunk of live output, None at the end: the container
    /// exited (and everything before was delivered), berthd was too slow
    /// (the shim drops a reader more than 1 MiB behind), or the connection
    /// broke. Cancel-safe.
    pub async fn next_output(&mut self) -> Option<(Stream, Bytes)> {
        loop {
            if self.buf.len() >= proto::FRAME_HEADER {
                let mut len = [0u8; 4];
                len.copy_from_slice(&self.buf[1..proto::FRAME_HEADER]);
                let len = u32::from_be_bytes(len) as usize;
                let stream = match self.buf[0] {
                    proto::FRAME_STDOUT => Stream::Stdout,
                    proto::FRAME_STDERR => Stream::Stderr,
                    other => {
                        tracing::warn!(pod_id = %self.pod_id, stream = other, "attach: bad frame");
                        return None;
                    }
                };
                if len > MAX_FRAME {
                    tracing::warn!(pod_id = %self.pod_id, len, "attach: frame too long");
                    return None;
                }
                if self.buf.len() >= proto::FRAME_HEADER + len {
                    self.buf.advance(proto::FRAME_HEADER);
                    return Some((stream, self.buf.split_to(len).freeze()));
                }
            }
            self.buf.reserve(16 * 1024);
            match self.conn.read_buf(&mut self.buf).await {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(pod_id = %self.pod_id, error = %e, "attach connection");
                    return None;
                }
            }
        }
    }
}

/// A stream descriptor (pipe end or pty master) as tokio I/O. Dropping it
/// closes the descriptor; `shutdown` does nothing (drop the writer to end
/// a process's stdin). A pty master's EIO (the process is gone) reads as
/// end of file.
#[derive(Debug)]
pub struct AsyncStdio(AsyncFd<OwnedFd>);

impl AsyncStdio {
    /// Registers `fd` (made non-blocking) with tokio's reactor.
    pub fn new(fd: OwnedFd) -> io::Result<AsyncStdio> {
        set_nonblocking(&fd)?;
        // SAFETY: the AsyncFd owns the OwnedFd, which stays open and keeps
        // its number until the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register(fd) }?;
        Ok(AsyncStdio(fd))
    }
}

impl AsFd for AsyncStdio {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.get_ref().as_fd()
    }
}

impl AsyncRead for AsyncStdio {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| Ok(nix::unistd::read(fd.get_ref(), unfilled))) {
                Ok(Ok(Ok(n))) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Ok(Err(nix::errno::Errno::EAGAIN))) => guard.clear_ready(),
                Ok(Ok(Err(nix::errno::Errno::EINTR))) => {}
                // A pty master whose slave side is gone for good.
                Ok(Ok(Err(nix::errno::Errno::EIO))) => return Poll::Ready(Ok(())),
                Ok(Ok(Err(e))) => return Poll::Ready(Err(e.into())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => {}
            }
        }
    }
}

impl AsyncWrite for AsyncStdio {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            match guard.try_io(|fd| Ok(nix::unistd::write(fd.get_ref(), data))) {
                Ok(Ok(Ok(n))) => return Poll::Ready(Ok(n)),
                Ok(Ok(Err(nix::errno::Errno::EAGAIN))) => guard.clear_ready(),
                Ok(Ok(Err(nix::errno::Errno::EINTR))) => {}
                Ok(Ok(Err(e))) => return Poll::Ready(Err(e.into())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => {}
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Sets a pty's window size (TIOCSWINSZ on the master); the process gets
/// SIGWINCH.
pub fn resize(pty: impl AsFd, cols: u16, rows: u16) -> Result<(), RuntimeError> {
    let size = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(pty, size)
        .map_err(|e| RuntimeError::io("setting the terminal size", e.into()))
}

fn set_nonblocking(fd: &impl AsFd) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// The exec's process file in the bundle, removed when dropped (also when
/// the caller gives up half way).
struct ProcessFile(PathBuf);

impl Drop for ProcessFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Containers {
    /// A process in a running container whose stdio the caller holds (CRI
    /// Exec through the streaming server). `tty`: one pty master instead of
    /// pipes (the process gets `TERM=xterm` unless its env sets TERM);
    /// `stdin` (without `tty`): a stdin pipe to write, else the process's
    /// stdin is at end of file.
    pub async fn exec_stream(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
        stdin: bool,
    ) -> Result<ExecSession, RuntimeError> {
        if cmd.is_empty() {
            return Err(RuntimeError::EmptyCommand);
        }
        let id = self.must_resolve(id)?;
        let rec = self.get(&id)?;
        if rec.state != State::Running {
            return Err(RuntimeError::WrongState {
                id,
                state: rec.state,
                wanted: "running",
            });
        }
        let bundle = Layout::new(&self.inner.paths.containers, &id).bundle();
        let spec: oci_spec::runtime::Spec = read_json(&bundle.join("config.json"))?;
        let mut process = berth_spec::process_for_exec(&spec, cmd)?;
        if tty {
            process.set_terminal(Some(true));
            let mut env = process.env().clone().unwrap_or_default();
            if !env.iter().any(|e| e.starts_with("TERM=")) {
                env.push("TERM=xterm".to_owned());
                process.set_env(Some(env));
            }
        }
        let file = ProcessFile(bundle.join(format!("exec-{}.json", &new_id()[..16])));
        let json = serde_json::to_vec(&process).map_err(|e| RuntimeError::Corrupt {
            path: file.0.clone(),
            message: format!("serializing the exec process: {e}"),
        })?;
        std::fs::write(&file.0, json)
            .map_err(|e| RuntimeError::io("writing the exec process", e))?;
        let req = Request::Exec(proto::Exec {
            id: id.clone(),
            process: file.0.clone(),
            tty,
            stdin,
        });
        let opened = self
            .inner
            .shims
            .open(&rec.pod_id, &req, OPEN_TIMEOUT)
            .await?;
        drop(file);
        let Response::ExecStarted { pid, fds: kinds } = opened.answer else {
            return Err(RuntimeError::unexpected(&rec.pod_id, opened.answer));
        };
        if kinds.len() != opened.fds.len() {
            return Err(RuntimeError::Shim {
                pod_id: rec.pod_id,
                message: format!(
                    "exec: {} descriptors announced, {} received",
                    kinds.len(),
                    opened.fds.len()
                ),
            });
        }
        let mut session = ExecSession {
            pid,
            stdin: None,
            stdout: None,
            stderr: None,
            pty: None,
            control: ExecControl {
                pod_id: rec.pod_id,
                conn: opened.stream,
                buf: opened.rest,
                exit: None,
            },
        };
        for (kind, fd) in kinds.into_iter().zip(opened.fds) {
            set_nonblocking(&fd).map_err(|e| RuntimeError::io("exec stdio", e))?;
            let slot = match kind {
                StreamFd::Stdin => &mut session.stdin,
                StreamFd::Stdout => &mut session.stdout,
                StreamFd::Stderr => &mut session.stderr,
                StreamFd::Pty => &mut session.pty,
            };
            *slot = Some(fd);
        }
        tracing::debug!(container_id = %id, pid, tty, "exec started");
        Ok(session)
    }

    /// Attaches to a running container's stdio (CRI Attach through the
    /// streaming server): the streams asked for, live, and its stdin when
    /// asked for and the container keeps one.
    pub async fn attach(
        &self,
        id: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<AttachSession, RuntimeError> {
        let id = self.must_resolve(id)?;
        let rec = self.get(&id)?;
        if rec.state != State::Running {
            return Err(RuntimeError::WrongState {
                id,
                state: rec.state,
                wanted: "running",
            });
        }
        let req = Request::Attach {
            id: id.clone(),
            stdin,
            stdout,
            stderr,
        };
        let opened = self
            .inner
            .shims
            .open(&rec.pod_id, &req, OPEN_TIMEOUT)
            .await?;
        let Response::Attached { tty, stdin } = opened.answer else {
            return Err(RuntimeError::unexpected(&rec.pod_id, opened.answer));
        };
        let mut fds = opened.fds.into_iter();
        let stdin = match (stdin, fds.next()) {
            (true, Some(fd)) => {
                set_nonblocking(&fd).map_err(|e| RuntimeError::io("attach stdin", e))?;
                Some(fd)
            }
            (false, None) => None,
            _ => {
                return Err(RuntimeError::Shim {
                    pod_id: rec.pod_id,
                    message: "attach: stdin descriptor missing or unexpected".into(),
                });
            }
        };
        tracing::debug!(container_id = %id, tty, stdin = stdin.is_some(), "attached");
        Ok(AttachSession {
            tty,
            stdin,
            pod_id: rec.pod_id,
            conn: opened.stream,
            buf: BytesMut::from(&opened.rest[..]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn control(conn: UnixStream) -> ExecControl {
        ExecControl {
            pod_id: "p".into(),
            conn,
            buf: Vec::new(),
            exit: None,
        }
    }

    #[tokio::test]
    async fn exec_control_sends_kill_and_reads_the_exit() {
        let (a, mut shim) = UnixStream::pair().unwrap();
        let mut c = control(a);
        c.kill(9).await.unwrap();
        assert!(c.kill(0).await.is_err());
        let mut got = [0u8; 25];
        shim.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"{\"op\":\"kill\",\"signal\":9}\n");
        // The exit line in two pieces, the wait cancelled in between.
        shim.write_all(b"{\"result\":\"exec_exited\",")
            .await
            .unwrap();
        let r = tokio::time::timeout(Duration::from_millis(100), c.wait()).await;
        assert!(r.is_err(), "no full line yet");
        shim.write_all(b"\"exit_code\":137,\"signal\":9}\n")
            .await
            .unwrap();
        drop(shim);
        assert_eq!(c.wait().await.unwrap(), 137);
        assert_eq!(c.wait().await.unwrap(), 137);
        assert_eq!(c.exit_code(), Some(137));
        // After the exit a kill is nothing, even on a closed connection.
        c.kill(15).await.unwrap();
    }

    #[tokio::test]
    async fn an_exec_connection_closed_early_is_an_error() {
        let (a, shim) = UnixStream::pair().unwrap();
        let mut c = control(a);
        drop(shim);
        assert!(matches!(c.wait().await, Err(RuntimeError::Shim { .. })));
    }

    #[tokio::test]
    async fn attach_frames_are_parsed_across_reads() {
        let (a, mut shim) = UnixStream::pair().unwrap();
        let mut s = AttachSession {
            tty: false,
            stdin: None,
            pod_id: "p".into(),
            conn: a,
            buf: BytesMut::from(&[1u8, 0, 0, 0, 2, b'h'][..]),
        };
        shim.write_all(b"i\x02\x00\x00\x00\x03err\x01\x00\x00\x00\x00")
            .await
            .unwrap();
        assert_eq!(
            s.next_output().await,
            Some((Stream::Stdout, Bytes::from_static(b"hi")))
        );
        assert_eq!(
            s.next_output().await,
            Some((Stream::Stderr, Bytes::from_static(b"err")))
        );
        assert_eq!(s.next_output().await, Some((Stream::Stdout, Bytes::new())));
        shim.write_all(b"\x07\x00\x00\x00\x01x").await.unwrap();
        assert_eq!(s.next_output().await, None, "unknown stream byte");
        drop(shim);
    }

    #[tokio::test]
    async fn async_stdio_over_a_pipe_and_eof() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut r = AsyncStdio::new(r).unwrap();
        let mut w = AsyncStdio::new(w).unwrap();
        let writer = tokio::spawn(async move {
            // More than a pipe holds: the writer waits for the reader.
            w.write_all(&vec![7u8; 300_000]).await.unwrap();
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), 300_000);
    }

    #[test]
    fn resize_sets_the_window_size_of_a_pty() {
        let Ok(master) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/ptmx")
        else {
            eprintln!("SKIPPED: no /dev/ptmx");
            return;
        };
        resize(&master, 132, 43).unwrap();
        let ws = rustix::termios::tcgetwinsize(&master).unwrap();
        assert_eq!((ws.ws_col, ws.ws_row), (132, 43));
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert!(resize(&r, 1, 1).is_err(), "not a terminal");
    }

    #[tokio::test]
    async fn descriptors_come_with_the_first_answer() {
        let tmp = tempfile::tempdir().unwrap();
        let shims = crate::shim::Shims::new(PathBuf::from("/nonexistent"), tmp.path().into());
        let pod = "abcdefabcdefabcdefabcdefabcdefab";
        std::fs::create_dir_all(shims.dir(pod)).unwrap();
        let listener =
            std::os::unix::net::UnixListener::bind(shims.dir(pod).join(proto::SOCKET)).unwrap();
        let (pr, pw) = nix::unistd::pipe().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut line = Vec::new();
            let mut b = [0u8; 1];
            while b[0] != b'\n' {
                std::io::Read::read_exact(&mut s, &mut b).unwrap();
                line.push(b[0]);
            }
            assert!(line.starts_with(b"{\"op\":\"attach\""));
            let msg =
                b"{\"result\":\"attached\",\"tty\":false,\"stdin\":true}\n\x01\x00\x00\x00\x02ok";
            let fds = [pw.as_raw_fd()];
            sendmsg::<()>(
                s.as_raw_fd(),
                &[IoSlice::new(msg)],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::empty(),
                None,
            )
            .unwrap();
        });
        let req = Request::Attach {
            id: "c".into(),
            stdin: true,
            stdout: true,
            stderr: false,
        };
        let opened = shims.open(pod, &req, Duration::from_secs(5)).await.unwrap();
        server.join().unwrap();
        assert_eq!(
            opened.answer,
            Response::Attached {
                tty: false,
                stdin: true
            }
        );
        assert_eq!(opened.rest, b"\x01\x00\x00\x00\x02ok");
        assert_eq!(opened.fds.len(), 1);
        // The received descriptor is the pipe's write end.
        nix::unistd::write(&opened.fds[0], b"x").unwrap();
        let mut b = [0u8; 1];
        nix::unistd::read(&pr, &mut b).unwrap();
        assert_eq!(&b, b"x");
    }
}
