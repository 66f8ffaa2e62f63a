//! TTY containers: the console socket of the OCI runtime command line.
//!
//! For a container whose `process.terminal` is set, the shim binds a unix
//! socket and passes it as `create --console-socket`; the runtime allocates
//! the container's pty and sends its master over that socket (SCM_RIGHTS)
//! before `create` returns. Connecting only queues in the listen backlog,
//! so the shim can run `create` synchronously and accept afterwards. The
//! master is then the container's stdout (its output, stderr included, is
//! logged as `stdout`, as containerd does) and, when kept, its stdin.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

/// A bound console socket, removed when dropped.
#[derive(Debug)]
pub struct ConsoleSocket {
    pub path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Binds `<dir>/tty-<serial>.sock` (mode 0600, non-blocking). Short on
    /// purpose: unix socket paths are limited to 107 bytes.
    pub fn bind(dir: &Path, serial: u64) -> Result<ConsoleSocket, String> {
        let path = dir.join(format!("tty-{serial}.sock"));
        let _ = std::fs::remove_file(&path);
        let listener = super::bind_private(&path)?;
        Ok(ConsoleSocket { path, listener })
    }

    /// The pty master the runtime sent (after its `create` returned).
    pub fn receive(&self) -> io::Result<OwnedFd> {
        let (conn, _) = self.listener.accept().map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::other("the runtime sent no console (pty master)")
            } else {
                e
            }
        })?;
        conn.set_nonblocking(true)?;
        receive_fd(conn.as_raw_fd())
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Receives one file descriptor sent with SCM_RIGHTS on `sock`.
pub fn receive_fd(sock: RawFd) -> io::Result<OwnedFd> {
    // runc sends the pty's name as the payload; it is not needed.
    let mut payload = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut payload)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: SCM_RIGHTS installed these descriptors in this
            // process for us; nothing else owns them.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    // Exactly one is expected; extra ones are closed when dropped.
    fds.into_iter()
        .next()
        .ok_or_else(|| io::Error::other("console socket message without a file descriptor"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{ControlMessage, sendmsg};
    use std::io::{IoSlice, Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_descriptor_sent_on_the_socket_is_received() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ConsoleSocket::bind(dir.path(), 7).unwrap();
        assert!(cs.path.ends_with("tty-7.sock"));
        assert!(cs.receive().is_err(), "nothing sent yet");
        let (mut r, w) = UnixStream::pair().unwrap();
        // As a runtime does: connect, send the fd, go away before any
        // accept.
        {
            let s = UnixStream::connect(&cs.path).unwrap();
            let fds = [w.as_raw_fd()];
            sendmsg::<()>(
                s.as_raw_fd(),
                &[IoSlice::new(b"/dev/pts/9")],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::empty(),
                None,
            )
            .unwrap();
        }
        drop(w);
        let got = cs.receive().unwrap();
        let mut f = std::fs::File::from(got);
        f.write_all(b"through the received fd").unwrap();
        drop(f);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "through the received fd");
        let path = cs.path.clone();
        drop(cs);
        assert!(!path.exists());
    }
}
