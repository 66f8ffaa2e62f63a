//! Streaming exec: `<runtime> exec --detach --process P --pid-file F
//! [--tty --console-socket S] ID`, the exec'd process's stdio handed to
//! berthd.
//!
//! Detached for both kinds: the runtime exits as soon as the process runs
//! (no runtime process stays around for the length of an interactive
//! session), the process is reparented to the shim (subreaper), and its
//! exit status comes straight from the kernel when the shim reaps it.
//! runc only sends a pty master over `--console-socket` when detached, so
//! TTY execs need that path anyway; one path for both keeps one way of
//! learning the pid and the exit.
//!
//! Lifecycle of a [`StreamExec`]: `Starting` (the runtime runs; the
//! connection waits) → the runtime is reaped: on success the pid is read
//! and [`Response::ExecStarted`] goes out with the descriptors, the shim
//! closes its copy of the stdin write end and keeps (unread) copies of the
//! output ends → `Running` → the process is reaped: `ExecExited`, the
//! record and every descriptor go. When the connection goes away before
//! that, the process keeps running and the shim reads and drops its
//! output, so it never blocks on a full pipe.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use berth_shim::proto::{ErrorKind, Exec, ExecControl, Response, Status, StreamFd};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::epoll::EpollFlags;

use super::console::ConsoleSocket;
use super::diag::Level;
use super::reaper::exit_code;
use super::runtime::{self, CALL_TIMEOUT, kill};
use super::server::error;
use super::session::Kind;
use super::{Shim, Source};

/// Reads of a draining output when the process ends (a grandchild may
/// keep writing: the loop is not held).
const DRAIN_READS: usize = 16;

#[derive(Debug)]
pub struct StreamExec {
    pub serial: u64,
    /// The container's id (diagnostics).
    pub id: String,
    /// The connection; None once it is gone.
    pub conn: Option<u64>,
    pub phase: Phase,
    pub pid_file: PathBuf,
    pub log_file: PathBuf,
    /// Until when the runtime may take to start the process.
    pub deadline: Option<Instant>,
    /// The runtime was killed at the deadline.
    pub timed_out: bool,
    /// The write end of the process's stdin, until sent.
    pub stdin: Option<OwnedFd>,
    /// The shim's copies of the output ends (stdout and stderr, or the pty
    /// master): unread while berthd is connected, drained after.
    pub outputs: Vec<Output>,
    /// With a terminal: the runtime's own stdout and stderr (for its
    /// error message), until it exits.
    pub runtime_out: Option<OwnedFd>,
}

#[derive(Debug)]
pub enum Phase {
    Starting {
        runtime_pid: i32,
        console: Option<ConsoleSocket>,
    },
    Running {
        pid: i32,
    },
}

#[derive(Debug)]
pub struct Output {
    pub kind: StreamFd,
    /// None once closed.
    pub fd: Option<OwnedFd>,
    /// The loop's token while draining.
    pub token: Option<u64>,
}

impl StreamExec {
    /// The process to SIGKILL at shutdown: the runtime, then the process.
    pub fn pid(&self) -> i32 {
        match self.phase {
            Phase::Starting { runtime_pid, .. } => runtime_pid,
            Phase::Running { pid } => pid,
        }
    }

    pub fn starting(&self) -> bool {
        matches!(self.phase, Phase::Starting { .. })
    }
}

/// The descriptors of a started runtime: the child's stdio, what the shim
/// keeps.
struct Pipes {
    child: [OwnedFd; 3],
    stdin: Option<OwnedFd>,
    outputs: Vec<Output>,
    runtime_out: Option<OwnedFd>,
}

fn pipes(req: &Exec) -> nix::Result<Pipes> {
    let (in_r, in_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    if req.tty {
        // The process's stdio is the pty; these only carry the runtime's.
        drop(in_w);
        let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let err_w = out_w.try_clone().map_err(|_| Errno::EMFILE)?;
        return Ok(Pipes {
            child: [in_r, out_w, err_w],
            stdin: None,
            outputs: Vec::new(),
            runtime_out: Some(out_r),
        });
    }
    let stdin = req.stdin.then_some(in_w);
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let output = |kind, fd| Output {
        kind,
        fd: Some(fd),
        token: None,
    };
    Ok(Pipes {
        child: [in_r, out_w, err_w],
        stdin,
        outputs: vec![
            output(StreamFd::Stdout, out_r),
            output(StreamFd::Stderr, err_r),
        ],
        runtime_out: None,
    })
}

impl Shim {
    /// Starts a streaming exec; the answer comes when the runtime exits.
    pub(super) fn exec_stream(&mut self, conn: u64, req: Exec) -> Option<Response> {
        let Some(i) = self.container_index(&req.id) else {
            return Some(error(
                ErrorKind::NotFound,
                format!("no container {}", req.id),
            ));
        };
        let c = &self.containers[i];
        if c.status != Status::Running {
            return Some(error(
                ErrorKind::InvalidState,
                format!("container {} is not running", req.id),
            ));
        }
        if !req.process.is_absolute() {
            return Some(error(
                ErrorKind::Invalid,
                "process must be an absolute path",
            ));
        }
        let (rt, id) = (c.runtime.clone(), c.id.clone());
        let serial = self.next_serial();
        let pid_file = self.dir.join(format!("exec-{serial}.pid"));
        let log_file = self.dir.join(format!("exec-{serial}.log"));
        let console = match req.tty.then(|| ConsoleSocket::bind(&self.dir, serial)) {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => return Some(error(ErrorKind::Io, format!("console socket: {e}"))),
        };
        let p = match pipes(&req) {
            Ok(p) => p,
            Err(e) => return Some(error(ErrorKind::Io, format!("pipe: {e}"))),
        };
        let spawned = {
            let mut cmd = runtime::command(&rt, &log_file);
            cmd.args(["exec", "--detach", "--process"])
                .arg(&req.process)
                .arg("--pid-file")
                .arg(&pid_file);
            if let Some(c) = &console {
                cmd.arg("--tty").arg("--console-socket").arg(&c.path);
            }
            let [i, o, e] = p.child;
            cmd.arg(&id)
                .stdin(Stdio::from(i))
                .stdout(Stdio::from(o))
                .stderr(Stdio::from(e));
            // The command (and the child's ends of the pipes) is dropped
            // at the end of this block.
            cmd.spawn()
        };
        let runtime_pid = match spawned {
            Ok(child) => child.id() as i32,
            Err(e) => {
                let _ = fs::remove_file(&log_file);
                return Some(error(
                    ErrorKind::Runtime,
                    format!("running {} exec: {e}", rt.path.display()),
                ));
            }
        };
        diag!(
            Level::Debug,
            "exec {serial} (streaming, tty {}) in {id}: runtime pid {runtime_pid}",
            req.tty
        );
        self.streams.push(StreamExec {
            serial,
            id,
            conn: Some(conn),
            phase: Phase::Starting {
                runtime_pid,
                console,
            },
            pid_file,
            log_file,
            deadline: Some(Instant::now() + CALL_TIMEOUT),
            timed_out: false,
            stdin: p.stdin,
            outputs: p.outputs,
            runtime_out: p.runtime_out,
        });
        None
    }

    /// The runtime's exec returned: the process runs (tell berthd, hand
    /// over its stdio) or it failed (tell berthd why, forget it).
    pub(super) fn stream_runtime_exited(&mut self, i: usize, raw: i32) {
        let e = &mut self.streams[i];
        let console = match &mut e.phase {
            Phase::Starting { console, .. } => console.take(),
            Phase::Running { .. } => None,
        };
        let pid = fs::read_to_string(&e.pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|&p| p > 0);
        let (code, _) = exit_code(raw);
        let started = match pid {
            Some(pid) if code == 0 => match console.as_ref().map(ConsoleSocket::receive) {
                None => Ok((pid, None)),
                Some(Ok(master)) => Ok((pid, Some(master))),
                Some(Err(err)) => Err(format!("console: {err}")),
            },
            Some(_) | None => Err(self.runtime_failure(i, code)),
        };
        drop(console);
        let e = &mut self.streams[i];
        let _ = fs::remove_file(&e.pid_file);
        let _ = fs::remove_file(&e.log_file);
        e.runtime_out = None;
        e.deadline = None;
        let (pid, master) = match started {
            Ok(s) => s,
            Err(message) => {
                // A process the runtime may have started all the same.
                if let Some(pid) = pid {
                    let _ = kill(pid, libc::SIGKILL);
                }
                let e = self.streams.remove(i);
                diag!(
                    Level::Info,
                    "exec {} in {} failed: {message}",
                    e.serial,
                    e.id
                );
                if let Some(conn) = e.conn {
                    self.respond(conn, &error(ErrorKind::Runtime, message));
                }
                return;
            }
        };
        e.phase = Phase::Running { pid };
        if let Some(m) = master {
            e.outputs.push(Output {
                kind: StreamFd::Pty,
                fd: Some(m),
                token: None,
            });
        }
        let serial = e.serial;
        diag!(Level::Debug, "exec {serial} in {}: pid {pid}", e.id);
        // Exited already, reaped with its runtime before its pid was read.
        let early = self.take_orphan(pid);
        let e = &mut self.streams[i];
        match e.conn {
            Some(conn) => {
                let mut kinds = Vec::new();
                let mut fds: Vec<RawFd> = Vec::new();
                if let Some(fd) = &e.stdin {
                    kinds.push(StreamFd::Stdin);
                    fds.push(fd.as_raw_fd());
                }
                for o in &e.outputs {
                    if let Some(fd) = &o.fd {
                        kinds.push(o.kind);
                        fds.push(fd.as_raw_fd());
                    }
                }
                let resp = Response::ExecStarted {
                    pid: pid as u32,
                    fds: kinds,
                };
                // On failure this already ran `exec_detached`.
                self.start_session(conn, &resp, &fds, Kind::Exec { exec: serial });
                if let Some(e) = self.streams.iter_mut().find(|e| e.serial == serial) {
                    // berthd's copy is the only one: its close is the EOF.
                    e.stdin = None;
                }
            }
            None => self.exec_detached(serial),
        }
        if let Some(raw) = early
            && let Some(i) = self.streams.iter().position(|e| e.serial == serial)
        {
            self.stream_process_exited(i, raw);
        }
    }

    /// Why the runtime's exec failed: its log, else its own output, else
    /// its status.
    fn runtime_failure(&mut self, i: usize, code: i32) -> String {
        let e = &self.streams[i];
        if let Some(m) = runtime::error_since(&e.log_file, 0) {
            return m;
        }
        if e.timed_out {
            return format!("the runtime's exec did not return within {CALL_TIMEOUT:?}");
        }
        // Non-TTY, the runtime's stderr is the process's stderr pipe.
        let fd = e.runtime_out.as_ref().or_else(|| {
            e.outputs
                .iter()
                .find(|o| o.kind == StreamFd::Stderr)
                .and_then(|o| o.fd.as_ref())
        });
        if let Some(fd) = fd
            && super::set_nonblocking(fd).is_ok()
            && let Ok(n) = nix::unistd::read(fd, &mut self.rbuf)
            && let Some(line) = runtime::last_line(&self.rbuf[..n])
        {
            return line;
        }
        if code == 0 {
            return format!("no pid in {}", e.pid_file.display());
        }
        format!("the runtime's exec exited with status {code}")
    }

    /// The exec'd process was reaped: report its exit, close what is left.
    pub(super) fn stream_process_exited(&mut self, i: usize, raw: i32) {
        let serial = self.streams[i].serial;
        for idx in 0..self.streams[i].outputs.len() {
            if self.streams[i].outputs[idx].token.is_some() {
                for _ in 0..DRAIN_READS {
                    if !self.drain_once(i, idx) {
                        break;
                    }
                }
            }
        }
        let mut e = self.streams.remove(i);
        for o in &mut e.outputs {
            self.close_output_copy(o);
        }
        let (exit_code, signal) = exit_code(raw);
        diag!(
            Level::Debug,
            "exec {serial} in {} exited: code {exit_code}",
            e.id
        );
        if let Some(conn) = e.conn {
            self.finish_session(conn, Some(&Response::ExecExited { exit_code, signal }));
        }
    }

    /// The exec's connection is gone: the process goes on; its output is
    /// read and dropped from now on.
    pub(super) fn exec_detached(&mut self, serial: u64) {
        let Some(i) = self.streams.iter().position(|e| e.serial == serial) else {
            return;
        };
        let e = &mut self.streams[i];
        e.conn = None;
        if e.starting() {
            // Handled when the runtime returns.
            return;
        }
        e.stdin = None;
        diag!(
            Level::Debug,
            "exec {serial} in {}: berthd went away, draining",
            e.id
        );
        for idx in 0..e.outputs.len() {
            let Shim {
                streams,
                poller,
                sources,
                ..
            } = self;
            let o = &mut streams[i].outputs[idx];
            let Some(fd) = &o.fd else { continue };
            if o.token.is_some() {
                continue;
            }
            let watched =
                super::set_nonblocking(fd).and_then(|()| poller.add(fd, EpollFlags::EPOLLIN));
            match watched {
                Ok(token) => {
                    o.token = Some(token);
                    sources.insert(token, Source::ExecDrain { exec: serial, idx });
                }
                Err(err) => {
                    // Better closed than full: the process gets EPIPE.
                    diag!(Level::Error, "exec {serial}: draining: {err}");
                    o.fd = None;
                }
            }
        }
    }

    /// A draining output is readable.
    pub(super) fn exec_drain(&mut self, serial: u64, idx: usize) {
        if let Some(i) = self.streams.iter().position(|e| e.serial == serial) {
            for _ in 0..4 {
                if !self.drain_once(i, idx) {
                    break;
                }
            }
        }
    }

    /// One read of a draining output, dropped. False when there is
    /// nothing more now (closed at end of file or error, EIO of a pty
    /// master whose process is gone).
    fn drain_once(&mut self, i: usize, idx: usize) -> bool {
        let Shim { streams, rbuf, .. } = self;
        let Some(o) = streams[i].outputs.get_mut(idx) else {
            return false;
        };
        let Some(fd) = &o.fd else { return false };
        match nix::unistd::read(fd, rbuf) {
            Ok(0) => {}
            Ok(_) | Err(Errno::EINTR) => return true,
            Err(Errno::EAGAIN) => return false,
            Err(_) => {}
        }
        let kind = o.kind;
        let mut o = std::mem::replace(
            o,
            Output {
                kind,
                fd: None,
                token: None,
            },
        );
        self.close_output_copy(&mut o);
        false
    }

    fn close_output_copy(&mut self, o: &mut Output) {
        if let Some(token) = o.token.take() {
            self.sources.remove(&token);
            if let Some(fd) = &o.fd {
                self.poller.remove(fd);
            }
        }
        o.fd = None;
    }

    /// A control line from berthd.
    pub(super) fn exec_control(&mut self, serial: u64, c: ExecControl) {
        let Some(e) = self.streams.iter().find(|e| e.serial == serial) else {
            return;
        };
        match c {
            ExecControl::Kill { signal } => {
                let Phase::Running { pid } = e.phase else {
                    return;
                };
                if !(1..=libc::SIGRTMAX()).contains(&signal) {
                    diag!(Level::Warn, "exec {serial}: invalid signal {signal}");
                    return;
                }
                // Not reaped yet (the record would be gone): still ours.
                match kill(pid, signal) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(err) => diag!(Level::Warn, "exec {serial}: kill {pid}: {err}"),
                }
            }
            // An exec's stdin is berthd's own descriptor: it closes it.
            ExecControl::CloseStdin => {}
        }
    }

    /// The runtime's exec took too long: SIGKILLed, answered when reaped.
    pub(super) fn stream_start_timed_out(&mut self, serial: u64) {
        let Some(e) = self.streams.iter_mut().find(|e| e.serial == serial) else {
            return;
        };
        e.deadline = None;
        if let Phase::Starting { runtime_pid, .. } = e.phase {
            e.timed_out = true;
            diag!(Level::Warn, "exec {serial}: the runtime's exec timed out");
            let _ = kill(runtime_pid, libc::SIGKILL);
        }
    }
}
