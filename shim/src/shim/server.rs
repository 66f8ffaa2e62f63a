//! The control server: connections on `shim.sock` (one JSON request line,
//! one JSON response line, close), request dispatch, and the requests
//! about the shim itself (Hello, List, Shutdown).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use berth_shim::proto::{self, ErrorKind, Request, Response, Status};
use nix::sys::epoll::EpollFlags;

use super::diag::Level;
use super::runtime::kill;
use super::session::Session;
use super::{Shim, Shutdown, Source};

/// A client has this long to send its request line, and to take the
/// answer.
pub(super) const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest request line.
const MAX_REQUEST: usize = 1 << 20;
/// Connections open at once, at most (more are closed at once).
const MAX_CONNS: usize = 256;
/// Shutdown waits this long for containers to be reaped.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// After answering Shutdown, this long to finish writing answers.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Conn {
    pub(super) stream: UnixStream,
    pub deadline: Option<Instant>,
    pub(super) state: State,
}

#[derive(Debug)]
pub(super) enum State {
    Reading(Vec<u8>),
    /// Request taken; the answer comes later (Wait, ExecSync, Shutdown).
    /// Only hangups are watched.
    Waiting,
    Writing {
        buf: Vec<u8>,
        off: usize,
    },
    /// A streaming session (Exec, Attach) after its first answer.
    Session(Session),
}

impl Conn {
    pub fn is_writing(&self) -> bool {
        match &self.state {
            State::Writing { .. } => true,
            State::Session(s) => s.is_writing(),
            _ => false,
        }
    }
}

pub fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error {
        kind,
        message: message.into(),
    }
}

impl Shim {
    pub(super) fn accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        loop {
            let stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors (EMFILE): the listener stays
                    // readable; do not spin on it.
                    diag!(Level::Error, "accept: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    return;
                }
            };
            let open = self
                .sources
                .values()
                .filter(|s| matches!(s, Source::Conn(_)))
                .count();
            if open >= MAX_CONNS {
                diag!(Level::Warn, "too many connections; closing a new one");
                continue;
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let token = match self.poller.add(&stream, EpollFlags::EPOLLIN) {
                Ok(t) => t,
                Err(e) => {
                    diag!(Level::Error, "epoll add: {e}");
                    continue;
                }
            };
            self.sources.insert(
                token,
                Source::Conn(Conn {
                    stream,
                    deadline: Some(Instant::now() + IO_TIMEOUT),
                    state: State::Reading(Vec::new()),
                }),
            );
        }
    }

    pub(super) fn conn_event(&mut self, token: u64, ev: EpollFlags) {
        if let Some(Source::Conn(Conn {
            state: State::Session(_),
            ..
        })) = self.sources.get(&token)
        {
            self.session_event(token, ev);
            return;
        }
        enum Next {
            Nothing,
            Close,
            Write,
            TooLong,
            Request(Vec<u8>),
        }
        let next = {
            let Shim {
                sources,
                rbuf,
                poller,
                ..
            } = self;
            let Some(Source::Conn(conn)) = sources.get_mut(&token) else {
                return;
            };
            match &mut conn.state {
                State::Reading(buf) => {
                    let next = match conn.stream.read(rbuf) {
                        Ok(0) if buf.is_empty() => Next::Close,
                        // End of file ends the request too.
                        Ok(0) => Next::Request(std::mem::take(buf)),
                        Ok(n) => {
                            let start = buf.len();
                            buf.extend_from_slice(&rbuf[..n]);
                            match buf[start..].iter().position(|&b| b == b'\n') {
                                Some(p) => {
                                    buf.truncate(start + p);
                                    Next::Request(std::mem::take(buf))
                                }
                                None if buf.len() > MAX_REQUEST => Next::TooLong,
                                None => Next::Nothing,
                            }
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                            ) =>
                        {
                            Next::Nothing
                        }
                        Err(_) => Next::Close,
                    };
                    if let Next::Request(_) = next {
                        // From now on only a hangup is of interest.
                        conn.state = State::Waiting;
                        conn.deadline = None;
                        let _ = poller.modify(&conn.stream, token, EpollFlags::empty());
                    }
                    next
                }
                State::Waiting => {
                    if ev.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
                        Next::Close
                    } else {
                        Next::Nothing
                    }
                }
                State::Writing { .. } => Next::Write,
                State::Session(_) => Next::Nothing,
            }
        };
        match next {
            Next::Nothing => {}
            Next::Close => self.close_conn(token),
            Next::Write => self.write_conn(token),
            Next::TooLong => self.respond(token, &error(ErrorKind::Invalid, "request too long")),
            Next::Request(line) => match serde_json::from_slice::<Request>(&line) {
                Ok(req) => {
                    if let Some(resp) = self.handle(token, req) {
                        self.respond(token, &resp);
                    }
                }
                Err(e) => {
                    let resp = error(ErrorKind::Invalid, format!("bad request: {e}"));
                    self.respond(token, &resp);
                }
            },
        }
    }

    /// Sends `resp` on the connection (if it is still there) and closes it
    /// once written.
    pub(super) fn respond(&mut self, token: u64, resp: &Response) {
        let Some(Source::Conn(conn)) = self.sources.get_mut(&token) else {
            return;
        };
        if let State::Session(_) = conn.state {
            self.finish_session(token, Some(resp));
            return;
        }
        let mut buf = serde_json::to_vec(resp).unwrap_or_else(|e| {
            format!(r#"{{"result":"error","kind":"io","message":"encoding the answer: {e}"}}"#)
                .into_bytes()
        });
        buf.push(b'\n');
        conn.state = State::Writing { buf, off: 0 };
        conn.deadline = Some(Instant::now() + IO_TIMEOUT);
        self.write_conn(token);
    }

    fn write_conn(&mut self, token: u64) {
        let Some(Source::Conn(conn)) = self.sources.get_mut(&token) else {
            return;
        };
        let State::Writing { buf, off } = &mut conn.state else {
            return;
        };
        while *off < buf.len() {
            match conn.stream.write(&buf[*off..]) {
                Ok(n) => *off += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let _ = self
                        .poller
                        .modify(&conn.stream, token, EpollFlags::EPOLLOUT);
                    return;
                }
                Err(_) => break,
            }
        }
        self.close_conn(token);
    }

    /// Closes a connection and forgets whoever waited on it.
    pub(super) fn close_conn(&mut self, token: u64) {
        let Some(Source::Conn(conn)) = self.sources.remove(&token) else {
            return;
        };
        self.poller.remove(&conn.stream);
        for c in &mut self.containers {
            c.waiters.retain(|&w| w != token);
            c.attachers.retain(|&a| a != token);
        }
        for e in &mut self.execs {
            if e.conn == Some(token) {
                e.conn = None;
            }
        }
        for e in &mut self.streams {
            if e.conn == Some(token) {
                e.conn = None;
            }
        }
        if let Some(s) = &mut self.shutdown {
            s.conns.retain(|&c| c != token);
        }
        if let State::Session(s) = conn.state {
            self.session_closed(s);
        }
    }

    /// Handles a request; None when the answer comes later.
    fn handle(&mut self, token: u64, req: Request) -> Option<Response> {
        if self.shutdown.is_some()
            && !matches!(
                req,
                Request::Hello | Request::List | Request::Wait { .. } | Request::Shutdown
            )
        {
            return Some(error(ErrorKind::InvalidState, "the shim is shutting down"));
        }
        Some(match req {
            Request::Hello => Response::Hello {
                version: proto::VERSION,
                pid: std::process::id(),
                pod_id: self.pod_id.clone(),
            },
            Request::Create(c) => self.create(c),
            Request::Start { id } => self.start(&id),
            Request::Kill { id, signal } => self.kill(&id, signal),
            Request::Wait { id } => return self.wait(token, &id),
            Request::Delete { id } => self.delete(&id),
            Request::ExecSync(e) => return self.exec_sync(token, e),
            Request::Exec(e) => return self.exec_stream(token, e),
            Request::Attach {
                id,
                stdin,
                stdout,
                stderr,
            } => return self.attach(token, &id, stdin, [stdout, stderr]),
            Request::ReopenLog { id } => self.reopen_log(&id),
            Request::List => Response::Containers {
                containers: self.containers.iter().map(|c| c.state()).collect(),
            },
            Request::Shutdown => return self.begin_shutdown(token),
        })
    }

    /// Shutdown: stop accepting, remove the socket and pid file, SIGKILL
    /// every container and exec; answered once all are reaped.
    fn begin_shutdown(&mut self, token: u64) -> Option<Response> {
        if let Some(s) = &mut self.shutdown {
            // Another Shutdown (a retry): answered like the first.
            if s.answered {
                return Some(Response::Ok);
            }
            s.conns.push(token);
            return None;
        }
        diag!(Level::Info, "shutdown requested");
        self.cleanup_files();
        for c in &self.containers {
            if c.status != Status::Exited {
                let _ = kill(c.pid as i32, libc::SIGKILL);
            }
        }
        for e in &self.execs {
            let _ = kill(e.runtime_pid, libc::SIGKILL);
        }
        for s in &self.streams {
            let _ = kill(s.pid(), libc::SIGKILL);
        }
        self.shutdown = Some(Shutdown {
            conns: vec![token],
            deadline: Instant::now() + SHUTDOWN_TIMEOUT,
            answered: false,
        });
        // Children that are already gone.
        self.reap();
        self.check_shutdown();
        None
    }

    /// Answers Shutdown once every container has been reaped.
    pub(super) fn check_shutdown(&mut self) {
        if let Some(s) = &self.shutdown
            && !s.answered
            && self.containers.iter().all(|c| c.status == Status::Exited)
        {
            self.answer_shutdown();
        }
    }

    pub(super) fn answer_shutdown(&mut self) {
        let Some(s) = &mut self.shutdown else { return };
        s.answered = true;
        s.deadline = Instant::now() + FLUSH_TIMEOUT;
        for conn in std::mem::take(&mut s.conns) {
            self.respond(conn, &Response::Ok);
        }
    }
}
