//! Attach: a running container's live output to berthd, as binary frames
//! after the `Attached` line, and its stdin (a dup of the write end the
//! shim keeps, or of the pty master) handed over with that line.
//!
//! The output is what the shim reads for the CRI log anyway: each read is
//! teed to the attached connections that asked for that stream, queued
//! per connection and written when the socket takes it. A connection more
//! than [`ATTACH_QUEUE_MAX`](super::session::ATTACH_QUEUE_MAX) behind is
//! closed: the log and the container never wait for an attacher.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, RawFd};

use berth_shim::proto::{ErrorKind, FRAME_STDERR, FRAME_STDOUT, Response, Status};

use super::diag::Level;
use super::server::{State, error};
use super::session::Kind;
use super::{Shim, Source};

/// Queues `data`, read from the container's `stream` (0 stdout, 1
/// stderr), on every attached connection that asked for it.
pub fn forward(sources: &mut BTreeMap<u64, Source>, attachers: &[u64], stream: usize, data: &[u8]) {
    let frame = if stream == 0 {
        FRAME_STDOUT
    } else {
        FRAME_STDERR
    };
    for t in attachers {
        if let Some(Source::Conn(conn)) = sources.get_mut(t)
            && let State::Session(s) = &mut conn.state
            && let Kind::Attach { streams, .. } = s.kind
            && streams[stream]
            && !s.is_closing()
        {
            s.queue_frame(frame, data);
        }
    }
}

impl Shim {
    /// Attach: answers at once (with the stdin descriptor), then streams.
    pub(super) fn attach(
        &mut self,
        token: u64,
        id: &str,
        stdin: bool,
        streams: [bool; 2],
    ) -> Option<Response> {
        let Some(i) = self.container_index(id) else {
            return Some(error(ErrorKind::NotFound, format!("no container {id}")));
        };
        let c = &mut self.containers[i];
        if c.status != Status::Running {
            return Some(error(
                ErrorKind::InvalidState,
                format!("container {id} is not running"),
            ));
        }
        let stdin_fd: Option<RawFd> = if stdin {
            c.stdin.as_ref().map(AsRawFd::as_raw_fd)
        } else {
            None
        };
        let resp = Response::Attached {
            tty: c.tty,
            stdin: stdin_fd.is_some(),
        };
        let kind = Kind::Attach {
            ctr: c.serial,
            streams,
            took_stdin: stdin_fd.is_some(),
        };
        c.attachers.push(token);
        diag!(
            Level::Debug,
            "attach to {id}: stdin {} streams {streams:?}",
            stdin_fd.is_some()
        );
        let fds: Vec<RawFd> = stdin_fd.into_iter().collect();
        self.start_session(token, &resp, &fds, kind);
        None
    }

    /// Writes what the container's attachers have queued.
    pub(super) fn flush_attachers(&mut self, i: usize) {
        if self.containers[i].attachers.is_empty() {
            return;
        }
        for t in self.containers[i].attachers.clone() {
            self.flush_session(t);
        }
    }

    /// An attach connection ended (detach, or closed by the shim), or its
    /// client's stdin did. With `stdin_once`, the first that took stdin
    /// closes it for good.
    pub(super) fn detached(&mut self, ctr: u64, took_stdin: bool) {
        let Some(c) = self.containers.iter_mut().find(|c| c.serial == ctr) else {
            return;
        };
        if took_stdin && c.stdin_once && c.stdin.take().is_some() {
            diag!(
                Level::Debug,
                "container {}: stdin closed (stdin_once)",
                c.id
            );
        }
    }
}
