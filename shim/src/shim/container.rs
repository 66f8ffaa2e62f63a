//! Container records and their stdio: the pipes the shim keeps, and
//! pumping their output into the CRI log.

use std::ffi::OsStr;
use std::fs;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use berth_shim::proto::{ContainerState, Create, ErrorKind, Exit, Response, Runtime, Status};
use nix::errno::Errno;
use nix::fcntl::OFlag;

use super::console::ConsoleSocket;
use super::crilog::{self, FLUSH_AT, LineSplitter, LogFile};
use super::diag::Level;
use super::reaper;
use super::runtime::{self, CALL_TIMEOUT, CREATE_TIMEOUT, Failure};
use super::server::error;
use super::{Shim, Source};

/// Stream names, indexed like [`Container::out`].
pub const STREAMS: [&str; 2] = ["stdout", "stderr"];

#[derive(Debug)]
pub struct Container {
    pub serial: u64,
    pub id: String,
    pub bundle: PathBuf,
    pub runtime: Runtime,
    /// The init process (host pid namespace); the shim is its parent.
    pub pid: u32,
    pub status: Status,
    pub exit: Option<Exit>,
    /// The write end of the container's stdin, when kept open.
    pub stdin: Option<OwnedFd>,
    /// Read ends of stdout and stderr, until end of file.
    pub out: [Option<OutPipe>; 2],
    /// None: output is read and dropped.
    pub log: Option<LogFile>,
    pub memory_cgroup: Option<PathBuf>,
    /// The cgroup's OOM kill count when the container was created.
    pub oom_base: u64,
    /// Connections waiting for the exit.
    pub waiters: Vec<u64>,
    /// Its stdio is a terminal (the pty master is `out[0]`).
    pub tty: bool,
    /// Close `stdin` when the first attach that took it ends.
    pub stdin_once: bool,
    /// Attach connections, sent the output as it is read.
    pub attachers: Vec<u64>,
}

impl Container {
    pub fn state(&self) -> ContainerState {
        ContainerState {
            id: self.id.clone(),
            pid: self.pid,
            status: self.status,
            exit: self.exit.clone(),
        }
    }
}

#[derive(Debug)]
pub struct OutPipe {
    pub fd: OwnedFd,
    pub token: u64,
    pub lines: LineSplitter,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Pump {
    /// Read something; there may be more.
    Data,
    /// Nothing buffered now.
    Again,
    /// End of file (or a read error): the pipe is done.
    Eof,
}

/// Reads once from `pipe`, hands what was read to `tee` (attached
/// clients) and writes it to `log` as CRI lines (or drops it without a
/// log).
pub fn pump(
    pipe: &mut OutPipe,
    stream: &str,
    log: Option<&mut LogFile>,
    rbuf: &mut [u8],
    out: &mut Vec<u8>,
    tee: &mut dyn FnMut(&[u8]),
) -> Pump {
    let n = match nix::unistd::read(&pipe.fd, rbuf) {
        Ok(0) => return Pump::Eof,
        Ok(n) => n,
        Err(Errno::EAGAIN) => return Pump::Again,
        Err(Errno::EINTR) => return Pump::Data,
        Err(_) => return Pump::Eof,
    };
    tee(&rbuf[..n]);
    if let Some(log) = log {
        let ts = crilog::now();
        out.clear();
        pipe.lines.push(&rbuf[..n], &mut |tag, content| {
            crilog::format_line(out, &ts, stream, tag, content);
            if out.len() >= FLUSH_AT {
                log.write(out);
                out.clear();
            }
        });
        if !out.is_empty() {
            log.write(out);
            out.clear();
        }
    }
    Pump::Data
}

/// End of a stream: its unterminated output goes to the log as `P`.
pub fn finish(pipe: &mut OutPipe, stream: &str, log: Option<&mut LogFile>, out: &mut Vec<u8>) {
    let Some(log) = log else { return };
    let ts = crilog::now();
    out.clear();
    pipe.lines.finish(&mut |tag, content| {
        crilog::format_line(out, &ts, stream, tag, content);
    });
    if !out.is_empty() {
        log.write(out);
        out.clear();
    }
}

/// Pipe reads at most this many times when draining at exit: a full pipe
/// (64 KiB by default) four times over, so a grandchild that keeps
/// writing cannot hold the loop.
const DRAIN_READS: usize = 16;

impl Shim {
    pub(super) fn container_index(&self, id: &str) -> Option<usize> {
        self.containers.iter().position(|c| c.id == id)
    }

    /// A container's pipe is readable: one read.
    pub(super) fn container_output(&mut self, serial: u64, stream: usize) {
        let Some(i) = self.containers.iter().position(|c| c.serial == serial) else {
            return;
        };
        let Shim {
            containers,
            rbuf,
            out,
            sources,
            ..
        } = self;
        let c = &mut containers[i];
        let Some(pipe) = c.out[stream].as_mut() else {
            return;
        };
        let mut tee = |data: &[u8]| super::attach::forward(sources, &c.attachers, stream, data);
        let pumped = pump(pipe, STREAMS[stream], c.log.as_mut(), rbuf, out, &mut tee);
        self.flush_attachers(i);
        if pumped == Pump::Eof {
            self.close_output(i, stream);
        }
    }

    /// Reads what the container's pipes hold now (at exit, at delete);
    /// closes the ones at end of file, or all of them when `close_all`.
    pub(super) fn drain_container(&mut self, i: usize, close_all: bool) {
        for (stream, name) in STREAMS.iter().enumerate() {
            let mut eof = false;
            {
                let Shim {
                    containers,
                    rbuf,
                    out,
                    sources,
                    ..
                } = self;
                let c = &mut containers[i];
                if let Some(pipe) = c.out[stream].as_mut() {
                    let mut tee =
                        |data: &[u8]| super::attach::forward(sources, &c.attachers, stream, data);
                    for _ in 0..DRAIN_READS {
                        match pump(pipe, name, c.log.as_mut(), rbuf, out, &mut tee) {
                            Pump::Data => continue,
                            Pump::Again => break,
                            Pump::Eof => {
                                eof = true;
                                break;
                            }
                        }
                    }
                }
            }
            self.flush_attachers(i);
            if eof || close_all {
                self.close_output(i, stream);
            }
        }
    }

    /// Flushes a stream's last partial line and closes its pipe.
    fn close_output(&mut self, i: usize, stream: usize) {
        let Shim {
            containers,
            out,
            poller,
            sources,
            ..
        } = self;
        let c = &mut containers[i];
        if let Some(mut pipe) = c.out[stream].take() {
            finish(&mut pipe, STREAMS[stream], c.log.as_mut(), out);
            poller.remove(&pipe.fd);
            sources.remove(&pipe.token);
            diag!(
                Level::Debug,
                "container {} {} closed",
                c.id,
                STREAMS[stream]
            );
        }
    }

    /// Registers a container's output pipe with the loop.
    pub(super) fn watch_output(
        &mut self,
        serial: u64,
        stream: usize,
        fd: OwnedFd,
    ) -> std::io::Result<OutPipe> {
        super::set_nonblocking(&fd)?;
        let token = self.poller.add(&fd, nix::sys::epoll::EpollFlags::EPOLLIN)?;
        self.sources.insert(
            token,
            Source::CtrOut {
                ctr: serial,
                stream,
            },
        );
        Ok(OutPipe {
            fd,
            token,
            lines: LineSplitter::default(),
        })
    }
}

/// A container id is used in file names (`<id>.exit`) and runtime command
/// lines: runc's rule, `[A-Za-z0-9_+.-]+`, and not `.` or `..`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'.' | b'-'))
}

/// Container requests: Create, Start, Kill, Wait, Delete, ReopenLog.
impl Shim {
    pub(super) fn create(&mut self, req: Create) -> Response {
        if !valid_id(&req.id) {
            return error(
                ErrorKind::Invalid,
                format!("invalid container id {:?}", req.id),
            );
        }
        if !req.bundle.is_absolute() || req.log_path.as_ref().is_some_and(|p| !p.is_absolute()) {
            return error(ErrorKind::Invalid, "bundle and log_path must be absolute");
        }
        if self.container_index(&req.id).is_some() {
            return error(
                ErrorKind::AlreadyExists,
                format!("container {} exists", req.id),
            );
        }
        // A log file this Create makes is removed again if it fails.
        let new_log = req.log_path.as_ref().filter(|p| !p.exists()).cloned();
        let log = match req.log_path.as_deref().map(LogFile::open).transpose() {
            Ok(l) => l,
            Err(e) => return error(ErrorKind::Io, format!("opening the container log: {e}")),
        };
        let pipes = (|| {
            Ok::<_, Errno>([
                nix::unistd::pipe2(OFlag::O_CLOEXEC)?,
                nix::unistd::pipe2(OFlag::O_CLOEXEC)?,
                nix::unistd::pipe2(OFlag::O_CLOEXEC)?,
            ])
        })();
        let [(in_r, in_w), (out_r, out_w), (err_r, err_w)] = match pipes {
            Ok(p) => p,
            Err(e) => return error(ErrorKind::Io, format!("pipe: {e}")),
        };
        let serial = self.next_serial();
        let console = match req.tty.then(|| ConsoleSocket::bind(&self.dir, serial)) {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => return error(ErrorKind::Io, format!("console socket: {e}")),
        };
        // A record left by an earlier container of that id is stale.
        let _ = fs::remove_file(reaper::exit_path(&self.dir, &req.id));
        let pid_file = req.bundle.join("init.pid");
        let _ = fs::remove_file(&pid_file);
        let rt_log = req.bundle.join("runtime.log");
        let mut args = vec![
            OsStr::new("create"),
            OsStr::new("--bundle"),
            req.bundle.as_os_str(),
            OsStr::new("--pid-file"),
            pid_file.as_os_str(),
        ];
        if let Some(c) = &console {
            args.extend([OsStr::new("--console-socket"), c.path.as_os_str()]);
        }
        args.push(OsStr::new(&req.id));
        let res = self.call_runtime(
            &req.runtime,
            &rt_log,
            &args,
            Some([in_r, out_w, err_w]),
            CREATE_TIMEOUT,
        );
        let created = res
            .and_then(|()| {
                fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok())
                    .filter(|&p| p > 0)
                    .ok_or(Failure {
                        detail: None,
                        summary: format!("no pid in {}", pid_file.display()),
                    })
            })
            .and_then(|pid| match &console {
                None => Ok((pid, None)),
                Some(c) => c.receive().map(|m| (pid, Some(m))).map_err(|e| Failure {
                    detail: None,
                    summary: format!("console: {e}"),
                }),
            });
        drop(console);
        let (pid, master) = match created {
            Ok(p) => p,
            Err(mut f) => {
                if f.detail.is_none() {
                    // runc also prints its error on the stderr it was given.
                    let _ = super::set_nonblocking(&err_r);
                    let mut buf = [0u8; 4096];
                    if let Ok(n) = nix::unistd::read(&err_r, &mut buf) {
                        f.detail = runtime::last_line(&buf[..n]);
                    }
                }
                // Whatever the runtime left half made (a timeout, no pid).
                let del = [
                    OsStr::new("delete"),
                    OsStr::new("--force"),
                    OsStr::new(&req.id),
                ];
                let _ = self.call_runtime(&req.runtime, &rt_log, &del, None, CALL_TIMEOUT);
                let _ = fs::remove_file(&pid_file);
                if let Some(p) = new_log {
                    let _ = fs::remove_file(p);
                }
                return error(ErrorKind::Runtime, f.message());
            }
        };
        let oom_base = req
            .memory_cgroup
            .as_deref()
            .and_then(reaper::read_oom_kill)
            .unwrap_or(0);
        // With a terminal the pty master is the container's stdio; the
        // pipes only carried the runtime's own output.
        let (outputs, stdin) = match master {
            Some(m) => {
                let stdin = if req.stdin { m.try_clone().ok() } else { None };
                ([Some(m), None], stdin)
            }
            None => ([Some(out_r), Some(err_r)], req.stdin.then_some(in_w)),
        };
        let mut out = [None, None];
        for (stream, fd) in outputs.into_iter().enumerate() {
            let Some(fd) = fd else { continue };
            match self.watch_output(serial, stream, fd) {
                Ok(p) => out[stream] = Some(p),
                Err(e) => diag!(
                    Level::Error,
                    "container {} {}: {e}",
                    req.id,
                    STREAMS[stream]
                ),
            }
        }
        diag!(Level::Info, "container {} created: pid {pid}", req.id);
        self.containers.push(Container {
            serial,
            id: req.id,
            bundle: req.bundle,
            runtime: req.runtime,
            pid,
            status: Status::Created,
            exit: None,
            stdin,
            out,
            log,
            memory_cgroup: req.memory_cgroup,
            oom_base,
            waiters: Vec::new(),
            tty: req.tty,
            stdin_once: req.stdin && req.stdin_once,
            attachers: Vec::new(),
        });
        // Its init may have been reaped during the call, before it was
        // known.
        if let Some(raw) = self.take_orphan(pid as i32) {
            self.container_exited(self.containers.len() - 1, raw);
        }
        Response::Created { pid }
    }

    pub(super) fn start(&mut self, id: &str) -> Response {
        let Some(i) = self.container_index(id) else {
            return not_found(id);
        };
        let c = &self.containers[i];
        match c.status {
            Status::Created => {}
            Status::Running => return error(ErrorKind::InvalidState, format!("{id} is running")),
            Status::Exited => return error(ErrorKind::InvalidState, format!("{id} has exited")),
        }
        let (rt, log, serial) = (c.runtime.clone(), c.bundle.join("runtime.log"), c.serial);
        let args = [OsStr::new("start"), OsStr::new(id)];
        if let Err(f) = self.call_runtime(&rt, &log, &args, None, CALL_TIMEOUT) {
            return error(ErrorKind::Runtime, f.message());
        }
        if let Some(c) = self.containers.iter_mut().find(|c| c.serial == serial)
            && c.status == Status::Created
        {
            c.status = Status::Running;
        }
        diag!(Level::Info, "container {id} started");
        Response::Ok
    }

    pub(super) fn kill(&mut self, id: &str, signal: i32) -> Response {
        let Some(i) = self.container_index(id) else {
            return not_found(id);
        };
        if !(1..=libc::SIGRTMAX()).contains(&signal) {
            return error(ErrorKind::Invalid, format!("invalid signal {signal}"));
        }
        let c = &self.containers[i];
        if c.status == Status::Exited {
            return Response::Ok;
        }
        // The shim is the parent: until it reaps the pid, it is this process.
        match runtime::kill(c.pid as i32, signal) {
            Ok(()) | Err(Errno::ESRCH) => Response::Ok,
            Err(e) => error(ErrorKind::Io, format!("kill {}: {e}", c.pid)),
        }
    }

    pub(super) fn wait(&mut self, token: u64, id: &str) -> Option<Response> {
        let Some(i) = self.container_index(id) else {
            return Some(not_found(id));
        };
        let c = &mut self.containers[i];
        match &c.exit {
            Some(exit) => Some(Response::Exited(exit.clone())),
            None => {
                c.waiters.push(token);
                None
            }
        }
    }

    pub(super) fn delete(&mut self, id: &str) -> Response {
        let Some(i) = self.container_index(id) else {
            return Response::Ok;
        };
        let serial = self.containers[i].serial;
        if self.containers[i].status != Status::Exited && !self.kill_and_reap(i, CALL_TIMEOUT) {
            return error(ErrorKind::Io, format!("{id}: the init process did not die"));
        }
        let Some(c) = self.containers.iter().find(|c| c.serial == serial) else {
            return Response::Ok;
        };
        let (rt, log) = (c.runtime.clone(), c.bundle.join("runtime.log"));
        let args = [OsStr::new("delete"), OsStr::new("--force"), OsStr::new(id)];
        if let Err(f) = self.call_runtime(&rt, &log, &args, None, CALL_TIMEOUT) {
            return error(ErrorKind::Runtime, f.message());
        }
        let Some(i) = self.containers.iter().position(|c| c.serial == serial) else {
            return Response::Ok;
        };
        self.drain_container(i, true);
        let c = self.containers.remove(i);
        let _ = fs::remove_file(reaper::exit_path(&self.dir, id));
        let _ = fs::remove_file(c.bundle.join("init.pid"));
        for w in c.waiters {
            self.respond(w, &not_found(id));
        }
        diag!(Level::Info, "container {id} deleted");
        Response::Ok
    }

    pub(super) fn reopen_log(&mut self, id: &str) -> Response {
        let Some(i) = self.container_index(id) else {
            return not_found(id);
        };
        match self.containers[i].log.as_mut().map(LogFile::reopen) {
            None | Some(Ok(())) => Response::Ok,
            Some(Err(e)) => error(ErrorKind::Io, format!("reopening the log of {id}: {e}")),
        }
    }
}

fn not_found(id: &str) -> Response {
    error(ErrorKind::NotFound, format!("no container {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids() {
        for ok in ["c1", "a.b-c_d+e", "0123456789abcdef"] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "x\n", "ü"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
        assert!(!valid_id(&"a".repeat(1025)));
    }
}
