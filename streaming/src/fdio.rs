//! A process's pipes (or terminal) as the server wants them: output read
//! into the bounded channel of a [`Process`](crate::backend::Process),
//! stdin written through an async writer. For a backend holding the
//! descriptors of an exec or attach.
//!
//! An exec ends when its process exits, even if a background child still
//! holds the pipes: once told the process exited, the readers take what
//! the pipes hold at that moment (everything the process wrote before it
//! exited) and stop, without waiting for an end of file that may never
//! come.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};

use crate::backend::{Output, OutputStream};

/// Output chunks queued before reading the pipes waits for the client.
const QUEUE: usize = 16;
const CHUNK: usize = 32 * 1024;

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}

/// `fd`, non-blocking, registered with the runtime's reactor.
fn watch(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    set_nonblocking(&fd)?;
    // SAFETY: the OwnedFd owns its descriptor, keeps it open for its
    // whole life inside the AsyncFd and always returns the same number.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

enum Read {
    Data(Bytes),
    Eof,
    Again,
}

fn read_once(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Read> {
    match rustix::io::read(fd, &mut *buf) {
        Ok(0) => Ok(Read::Eof),
        Ok(n) => Ok(Read::Data(Bytes::copy_from_slice(
            buf.get(..n).unwrap_or_default(),
        ))),
        Err(rustix::io::Errno::AGAIN) => Ok(Read::Again),
        Err(rustix::io::Errno::INTR) => Ok(Read::Again),
        // A terminal whose last slave closed reads EIO: its end.
        Err(rustix::io::Errno::IO) => Ok(Read::Eof),
        Err(e) => Err(e.into()),
    }
}

async fn pump_one(
    fd: OwnedFd,
    stream: OutputStream,
    tx: mpsc::Sender<Output>,
    mut exited: watch::Receiver<bool>,
) {
    let afd = match watch(fd) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "streaming: cannot watch a process pipe");
            return;
        }
    };
    let mut buf = vec![0u8; CHUNK];
    loop {
        if *exited.borrow() {
            // Take what is there now, then stop.
            while let Ok(Read::Data(data)) = read_once(afd.get_ref(), &mut buf) {
                if tx.send(Output { stream, data }).await.is_err() {
                    return;
                }
            }
            return;
        }
        tokio::select! {
            guard = afd.readable() => {
                let Ok(mut guard) = guard else { return };
                match read_once(afd.get_ref(), &mut buf) {
                    Ok(Read::Data(data)) => {
                        if tx.send(Output { stream, data }).await.is_err() {
                            return;
                        }
                    }
                    Ok(Read::Again) => guard.clear_ready(),
                    Ok(Read::Eof) | Err(_) => return,
                }
            }
            changed = exited.changed() => {
                if changed.is_err() {
                    // The sender is gone without saying: treat as exited.
                    while let Ok(Read::Data(data)) = read_once(afd.get_ref(), &mut buf) {
                        if tx.send(Output { stream, data }).await.is_err() {
                            return;
                        }
                    }
                    return;
                }
            }
        }
    }
}

/// Reads `stdout` and `stderr` (either may be absent; a terminal is one
/// `stdout`) into a channel until each ends or, after `exited` turns
/// true, until each is empty. The channel closes when both are done.
pub fn pump(
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    exited: watch::Receiver<bool>,
) -> mpsc::Receiver<Output> {
    let (tx, rx) = mpsc::channel(QUEUE);
    for (fd, stream) in [
        (stdout, OutputStream::Stdout),
        (stderr, OutputStream::Stderr),
    ] {
        if let Some(fd) = fd {
            tokio::spawn(pump_one(fd, stream, tx.clone(), exited.clone()));
        }
    }
    rx
}

/// Writes to a pipe or terminal without blocking a thread. Dropping it
/// closes the descriptor (the reader sees end of file).
#[derive(Debug)]
pub struct FdWriter {
    fd: Option<AsyncFd<OwnedFd>>,
}

impl FdWriter {
    /// `fd` becomes non-blocking.
    pub fn new(fd: OwnedFd) -> io::Result<FdWriter> {
        Ok(FdWriter {
            fd: Some(watch(fd)?),
        })
    }
}

impl AsyncWrite for FdWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Some(fd) = self.fd.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        loop {
            let mut guard = ready!(fd.poll_write_ready(cx))?;
            match guard
                .try_io(|inner| rustix::io::write(inner.get_ref(), buf).map_err(io::Error::from))
            {
                Ok(res) => return Poll::Ready(res),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.fd.take();
        Poll::Ready(Ok(()))
    }
}

impl AsRawFd for FdWriter {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_ref().map_or(-1, |f| f.get_ref().as_raw_fd())
    }
}

/// A terminal's input: the end of the client's stdin is typed as the
/// terminal's end-of-file character (^D, VEOF), so a program reading
/// the terminal in canonical mode sees end of file, as it would from a
/// pipe; the terminal itself stays open for the output.
#[derive(Debug)]
pub struct TerminalInput<W> {
    inner: W,
    eof_sent: bool,
}

impl<W> TerminalInput<W> {
    pub fn new(inner: W) -> TerminalInput<W> {
        TerminalInput {
            inner,
            eof_sent: false,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for TerminalInput<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.eof_sent {
            // A process gone already is no error here.
            let _ = ready!(Pin::new(&mut self.inner).poll_write(cx, b"\x04"));
            self.eof_sent = true;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn pipe() -> (OwnedFd, OwnedFd) {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap()
    }

    #[tokio::test]
    async fn a_terminals_input_ends_with_its_eof_character() {
        let (r, w) = pipe();
        let mut t = TerminalInput::new(FdWriter::new(w).unwrap());
        t.write_all(b"ls").await.unwrap();
        t.shutdown().await.unwrap();
        drop(t);
        let mut got = [0u8; 8];
        let n = rustix::io::read(&r, &mut got).unwrap();
        assert_eq!(&got[..n], b"ls\x04");
    }

    #[tokio::test]
    async fn output_is_read_until_end_of_file() {
        let (r, w) = pipe();
        let (_tx, rx_exit) = watch::channel(false);
        let mut rx = pump(Some(r), None, rx_exit);
        let mut w = FdWriter::new(w).unwrap();
        w.write_all(b"hello").await.unwrap();
        drop(w);
        let mut got = Vec::new();
        while let Some(o) = rx.recv().await {
            assert_eq!(o.stream, OutputStream::Stdout);
            got.extend_from_slice(&o.data);
        }
        assert_eq!(got, b"hello");
    }

    #[tokio::test]
    async fn after_exit_a_pipe_held_open_elsewhere_is_drained_not_awaited() {
        let (r, w) = pipe();
        let (tx, rx_exit) = watch::channel(false);
        let mut rx = pump(None, Some(r), rx_exit);
        rustix::io::write(&w, b"before exit").unwrap();
        tx.send(true).unwrap();
        let mut got = Vec::new();
        // `w` stays open (a background child): the channel still closes.
        while let Some(o) = rx.recv().await {
            assert_eq!(o.stream, OutputStream::Stderr);
            got.extend_from_slice(&o.data);
        }
        assert_eq!(got, b"before exit");
        drop(w);
    }
}
