//! Streaming sessions: connections that stay open after their first
//! answer (`Exec`, `Attach`). The first line goes out with `sendmsg`,
//! descriptors attached (SCM_RIGHTS); after it the connection is
//! non-blocking both ways: lines from berthd are read as they come (exec
//! control), output is queued and written when the socket takes it
//! (EPOLLOUT), bounded per connection.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use berth_shim::proto::{ExecControl, Response};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

use super::diag::Level;
use super::server::{IO_TIMEOUT, State};
use super::{Shim, Source};

/// Output queued for one attach connection, at most; a reader slower
/// than the container is dropped (the log and the container never wait).
pub const ATTACH_QUEUE_MAX: usize = 1 << 20;
/// Longest control line berthd may send on an exec connection.
const MAX_CONTROL_LINE: usize = 4096;
/// How long the first answer may wait for room in the socket (it is the
/// first thing written on a fresh connection: in practice never).
const FIRST_WRITE_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Session {
    pub kind: Kind,
    /// Bytes of an unfinished control line.
    input: Vec<u8>,
    /// Output not yet written, from `off`.
    out: Vec<u8>,
    off: usize,
    /// Close once `out` is written (the last answer is queued).
    closing: bool,
    /// EPOLLOUT is in the interest set.
    want_out: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A streaming exec, by its serial.
    Exec { exec: u64 },
    /// An attach to the container of that serial: which of stdout and
    /// stderr it gets; whether it took the container's stdin.
    Attach {
        ctr: u64,
        streams: [bool; 2],
        took_stdin: bool,
    },
}

impl Session {
    fn pending(&self) -> usize {
        self.out.len() - self.off
    }

    pub fn is_closing(&self) -> bool {
        self.closing
    }

    pub fn is_writing(&self) -> bool {
        self.closing || self.pending() > 0
    }

    /// Appends one attach frame: stream byte, big-endian length, bytes.
    pub fn queue_frame(&mut self, stream: u8, data: &[u8]) {
        // Chunks are at most the shim's read buffer (16 KiB).
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        self.out.push(stream);
        self.out.extend_from_slice(&len.to_be_bytes());
        self.out.extend_from_slice(&data[..len as usize]);
    }
}

/// What reading a session's socket found: the control lines, and whether
/// the connection is gone (end of file, an error, a bad line).
struct Input {
    controls: Vec<ExecControl>,
    gone: bool,
}

/// Sends `data` with `fds` (SCM_RIGHTS) on a non-blocking socket: the
/// number of bytes written (the descriptors went with the first of them).
fn send_with_fds(sock: &UnixStream, data: &[u8], fds: &[RawFd]) -> nix::Result<usize> {
    let iov = [IoSlice::new(data)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    let deadline = Instant::now() + FIRST_WRITE_WAIT;
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) if Instant::now() < deadline => {
                let mut p = [PollFd::new(sock.as_fd(), PollFlags::POLLOUT)];
                let _ = poll(
                    &mut p,
                    super::poller::poll_timeout(Some(Duration::from_millis(50))),
                );
            }
            r => return r,
        }
    }
}

impl Shim {
    /// Turns the connection into a session: sends `first` (one JSON line)
    /// with `fds`, then keeps the connection open. False when the
    /// connection is gone (then already closed, with the session's
    /// cleanup run).
    pub(super) fn start_session(
        &mut self,
        token: u64,
        first: &Response,
        fds: &[RawFd],
        kind: Kind,
    ) -> bool {
        let Some(Source::Conn(conn)) = self.sources.get_mut(&token) else {
            return false;
        };
        let mut line = serde_json::to_vec(first).unwrap_or_default();
        line.push(b'\n');
        conn.deadline = None;
        conn.state = State::Session(Session {
            kind,
            input: Vec::new(),
            out: Vec::new(),
            off: 0,
            closing: false,
            want_out: false,
        });
        let sent = match send_with_fds(&conn.stream, &line, fds) {
            Ok(n) => n,
            Err(e) => {
                diag!(Level::Info, "a streaming client went away: {e}");
                self.close_conn(token);
                return false;
            }
        };
        if let State::Session(s) = &mut conn.state {
            s.out.extend_from_slice(&line[sent..]);
        }
        let _ = self.poller.modify(&conn.stream, token, EpollFlags::EPOLLIN);
        self.flush_session(token);
        true
    }

    /// The session of a connection.
    pub(super) fn session_mut(&mut self, token: u64) -> Option<&mut Session> {
        match self.sources.get_mut(&token) {
            Some(Source::Conn(c)) => match &mut c.state {
                State::Session(s) => Some(s),
                _ => None,
            },
            _ => None,
        }
    }

    /// Queues a last JSON line and closes the session once it is written.
    pub(super) fn finish_session(&mut self, token: u64, last: Option<&Response>) {
        let Some(Source::Conn(conn)) = self.sources.get_mut(&token) else {
            return;
        };
        let State::Session(s) = &mut conn.state else {
            return;
        };
        if let Some(r) = last
            && let Ok(mut line) = serde_json::to_vec(r)
        {
            line.push(b'\n');
            s.out.extend_from_slice(&line);
        }
        s.closing = true;
        conn.deadline = Some(Instant::now() + IO_TIMEOUT);
        self.flush_session(token);
    }

    /// Writes what the socket takes; closes the connection when it is
    /// done (closing and flushed), broken, or too far behind.
    pub(super) fn flush_session(&mut self, token: u64) {
        let close = {
            let Some(Source::Conn(conn)) = self.sources.get_mut(&token) else {
                return;
            };
            let State::Session(s) = &mut conn.state else {
                return;
            };
            let mut broken = false;
            while s.off < s.out.len() {
                match conn.stream.write(&s.out[s.off..]) {
                    Ok(0) => {
                        broken = true;
                        break;
                    }
                    Ok(n) => s.off += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        broken = true;
                        break;
                    }
                }
            }
            if s.off == s.out.len() {
                s.off = 0;
                s.out.clear();
                if s.out.capacity() > 64 * 1024 {
                    s.out = Vec::new();
                }
            } else if s.off > s.out.len() / 2 {
                s.out.drain(..s.off);
                s.off = 0;
            }
            let overflow = s.pending() > ATTACH_QUEUE_MAX;
            if overflow {
                diag!(
                    Level::Warn,
                    "an attached client is {} bytes behind: detaching it",
                    s.pending()
                );
            }
            let want_out = s.pending() > 0;
            if want_out != s.want_out && !broken && !overflow {
                s.want_out = want_out;
                let interest = if want_out {
                    EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT
                } else {
                    EpollFlags::EPOLLIN
                };
                let _ = self.poller.modify(&conn.stream, token, interest);
            }
            broken || overflow || (s.closing && s.pending() == 0)
        };
        if close {
            self.close_conn(token);
        }
    }

    /// An event on a session's connection.
    pub(super) fn session_event(&mut self, token: u64, ev: EpollFlags) {
        if ev.contains(EpollFlags::EPOLLOUT) {
            self.flush_session(token);
        }
        if !ev.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
            return;
        }
        let input = {
            let Shim { sources, rbuf, .. } = self;
            let Some(Source::Conn(conn)) = sources.get_mut(&token) else {
                return;
            };
            let State::Session(s) = &mut conn.state else {
                return;
            };
            read_controls(&mut conn.stream, s, rbuf)
        };
        match self.session_mut(token).map(|s| s.kind) {
            Some(Kind::Exec { exec }) => {
                for c in input.controls {
                    self.exec_control(exec, c);
                }
            }
            Some(Kind::Attach {
                ctr, took_stdin, ..
            }) if input.controls.contains(&ExecControl::CloseStdin) => {
                self.detached(ctr, took_stdin);
            }
            _ => {}
        }
        if input.gone {
            self.close_conn(token);
        }
    }

    /// A session's connection is gone (closed by either side): its exec
    /// goes on unattended, its attach detaches.
    pub(super) fn session_closed(&mut self, s: Session) {
        match s.kind {
            Kind::Exec { exec } => self.exec_detached(exec),
            Kind::Attach {
                ctr, took_stdin, ..
            } => self.detached(ctr, took_stdin),
        }
    }
}

/// Reads what berthd wrote: complete control lines, or Gone at end of
/// file, on an error, or on a line too long or malformed.
fn read_controls(stream: &mut UnixStream, s: &mut Session, rbuf: &mut [u8]) -> Input {
    let mut controls = Vec::new();
    let gone = |controls| Input {
        controls,
        gone: true,
    };
    loop {
        match stream.read(rbuf) {
            Ok(0) => return gone(controls),
            Ok(n) => {
                s.input.extend_from_slice(&rbuf[..n]);
                while let Some(p) = s.input.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = s.input.drain(..=p).collect();
                    let line = &line[..p];
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match serde_json::from_slice::<ExecControl>(line) {
                        Ok(c) => controls.push(c),
                        Err(e) => {
                            diag!(Level::Warn, "bad session control line: {e}");
                            return gone(controls);
                        }
                    }
                }
                if s.input.len() > MAX_CONTROL_LINE {
                    return gone(controls);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Input {
                    controls,
                    gone: false,
                };
            }
            Err(_) => return gone(controls),
        }
    }
}
