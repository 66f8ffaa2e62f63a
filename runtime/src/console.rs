//! The terminal of an exec with `--tty --console-socket`, on the setns
//! path: the pty is allocated inside the container (its `/dev/ptmx`, once
//! the child is in the container's mount namespace, so the slave is one
//! of the container's `/dev/pts`), its master sent over the console
//! socket with SCM_RIGHTS, its name as the payload (as runc sends it), and
//! the slave made the process's controlling terminal and stdio.
//!
//! The socket is a host path: it is connected before the child leaves the
//! host's mount namespace ([`connect`]), and the pty made after
//! ([`take_terminal`]).

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result};
use nix::fcntl::OFlag;
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use nix::sys::stat::Mode;

/// The console socket, connected (in the host's mount namespace).
pub fn connect(path: &Path) -> Result<OwnedFd> {
    let s = UnixStream::connect(path)
        .with_context(|| format!("connect to the console socket {}", path.display()))?;
    Ok(s.into())
}

/// Allocates the pty in the current mount namespace, sends its master
/// over `socket` and makes the slave this process's controlling terminal
/// and stdin, stdout and stderr. `size` (rows, columns) is the initial
/// window size. The caller is a session leader (setsid) without a
/// controlling terminal.
pub fn take_terminal(socket: &OwnedFd, size: Option<(u16, u16)>) -> Result<()> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .context("open /dev/ptmx")?;
    nix::pty::grantpt(&master).context("grantpt")?;
    nix::pty::unlockpt(&master).context("unlockpt")?;
    let name = nix::pty::ptsname_r(&master).context("ptsname")?;
    let slave: OwnedFd = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("open {name}"))?;
    if let Some((rows, cols)) = size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which
        // lives for the call; the descriptor is open.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
            return Err(std::io::Error::last_os_error()).context("set the terminal size");
        }
    }
    let iov = [IoSlice::new(name.as_bytes())];
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .context("send the pty master over the console socket")?;
    drop(master);
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal a
    // terminal another session holds); the descriptor is open.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(std::io::Error::last_os_error())
            .context("make the pty the controlling terminal");
    }
    nix::unistd::dup2_stdin(slave.as_fd()).context("dup the pty to stdin")?;
    nix::unistd::dup2_stdout(slave.as_fd()).context("dup the pty to stdout")?;
    nix::unistd::dup2_stderr(slave.as_fd()).context("dup the pty to stderr")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;
    use std::os::unix::net::UnixListener;

    use nix::sys::socket::{ControlMessageOwned, recvmsg};
    use nix::unistd::ForkResult;

    use super::*;

    /// A child takes a terminal as an exec's would; the master arrives
    /// over the socket with the pty's name, and what the child writes to
    /// stdout comes out of it.
    #[test]
    fn the_master_is_sent_and_the_slave_is_the_childs_terminal() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("console.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let sock = connect(&path).unwrap();
        // SAFETY: the test process forks a child that only makes system
        // calls and exits with _exit; it may run beside other test
        // threads, which it never touches.
        match unsafe { nix::unistd::fork() }.unwrap() {
            ForkResult::Child => {
                let ok = nix::unistd::setsid().is_ok()
                    && take_terminal(&sock, Some((33, 77))).is_ok()
                    && std::io::stdout().write_all(b"hello from the pty\n").is_ok();
                let _ = std::io::stdout().flush();
                // SAFETY: leaves without running the test harness's
                // exit handlers.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) }
            }
            ForkResult::Parent { child } => {
                drop(sock);
                let (conn, _) = listener.accept().unwrap();
                let mut payload = [0u8; 256];
                let (bytes, master) = {
                    let mut iov = [std::io::IoSliceMut::new(&mut payload)];
                    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
                    let msg = recvmsg::<()>(
                        conn.as_raw_fd(),
                        &mut iov,
                        Some(&mut space),
                        MsgFlags::empty(),
                    )
                    .unwrap();
                    let mut master = None;
                    for c in msg.cmsgs().unwrap() {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            // SAFETY: SCM_RIGHTS gave us this descriptor.
                            master = Some(unsafe { std::fs::File::from_raw_fd(fds[0]) });
                        }
                    }
                    (msg.bytes, master)
                };
                let name = String::from_utf8_lossy(&payload[..bytes]).into_owned();
                assert!(name.starts_with("/dev/pts/"), "{name}");
                let mut master = master.expect("a descriptor");
                let mut ws = libc::winsize {
                    ws_row: 0,
                    ws_col: 0,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                // SAFETY: TIOCGWINSZ writes one winsize to the pointer,
                // which lives for the call.
                let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
                assert_eq!(r, 0);
                assert_eq!((ws.ws_row, ws.ws_col), (33, 77));
                let mut out = Vec::new();
                let mut buf = [0u8; 256];
                while !String::from_utf8_lossy(&out).contains("hello from the pty") {
                    match master.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => out.extend_from_slice(&buf[..n]),
                    }
                }
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
                assert!(
                    String::from_utf8_lossy(&out).contains("hello from the pty"),
                    "{:?}",
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }
}
