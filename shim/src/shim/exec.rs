//! ExecSync: `<runtime> exec --process P --pid-file F ID` as a child of the
//! shim, its output captured by the loop, its exit (through SIGCHLD) the
//! process's exit code (runc exits with the process's status, 128 + signal
//! when it was killed). Nothing is written to the container's log.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_shim::proto::{ErrorKind, ExecSync, Response, Status};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::epoll::EpollFlags;

use super::container::Pump;
use super::diag::Level;
use super::reaper::exit_code;
use super::runtime::{self, kill};
use super::server::error;
use super::{Shim, Source};

#[derive(Debug)]
pub struct Exec {
    pub serial: u64,
    /// The runtime's `exec` process (a child of the shim).
    pub runtime_pid: i32,
    /// Where the runtime writes the exec'd process's pid.
    pub pid_file: PathBuf,
    /// The runtime's `--log` for this call.
    pub log_file: PathBuf,
    /// The connection to answer; None once answered (timeout) or gone.
    pub conn: Option<u64>,
    pub deadline: Option<Instant>,
    pub max_output: usize,
    /// stdout and stderr read ends and their tokens, until end of file.
    pub pipes: [Option<(OwnedFd, u64)>; 2],
    pub captured: [Vec<u8>; 2],
}

/// Reads at most this many times per pipe when the exec ends.
const DRAIN_READS: usize = 64;

impl Shim {
    /// Starts an exec; the answer comes when the runtime process exits.
    pub(super) fn exec_sync(&mut self, conn: u64, req: ExecSync) -> Option<Response> {
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
        let spawned = (|| {
            let (in_r, in_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
            drop(in_w);
            let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
            let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
            let mut cmd = runtime::command(&rt, &log_file);
            cmd.arg("exec")
                .arg("--process")
                .arg(&req.process)
                .arg("--pid-file")
                .arg(&pid_file)
                .arg(&id)
                .stdin(Stdio::from(in_r))
                .stdout(Stdio::from(out_w))
                .stderr(Stdio::from(err_w));
            let child = cmd.spawn()?;
            Ok::<_, std::io::Error>((child.id() as i32, out_r, err_r))
        })();
        let (runtime_pid, out_r, err_r) = match spawned {
            Ok(s) => s,
            Err(e) => {
                return Some(error(
                    ErrorKind::Runtime,
                    format!("running {} exec: {e}", rt.path.display()),
                ));
            }
        };
        let mut pipes = [None, None];
        for (stream, fd) in [out_r, err_r].into_iter().enumerate() {
            match self.watch_exec_pipe(serial, stream, &fd) {
                Ok(token) => pipes[stream] = Some((fd, token)),
                // Unread output stays in the pipe; the exit still answers.
                Err(e) => diag!(Level::Error, "exec pipe: {e}"),
            }
        }
        diag!(
            Level::Debug,
            "exec {serial} in {id}: runtime pid {runtime_pid}"
        );
        self.execs.push(Exec {
            serial,
            runtime_pid,
            pid_file,
            log_file,
            conn: Some(conn),
            deadline: (req.timeout_ms > 0)
                .then(|| Instant::now().checked_add(Duration::from_millis(req.timeout_ms)))
                .flatten(),
            max_output: usize::try_from(req.max_output).unwrap_or(usize::MAX),
            pipes,
            captured: [Vec::new(), Vec::new()],
        });
        // It may have exited already (reaped before the record existed is
        // impossible: reaping happens only in the loop or in sync calls).
        None
    }

    fn watch_exec_pipe(&mut self, exec: u64, stream: usize, fd: &OwnedFd) -> std::io::Result<u64> {
        super::set_nonblocking(fd)?;
        let token = self.poller.add(fd, EpollFlags::EPOLLIN)?;
        self.sources.insert(token, Source::ExecOut { exec, stream });
        Ok(token)
    }

    /// An exec pipe is readable: one read.
    pub(super) fn exec_output(&mut self, serial: u64, stream: usize) {
        if let Some(i) = self.execs.iter().position(|e| e.serial == serial)
            && self.read_exec_pipe(i, stream) == Pump::Eof
        {
            self.close_exec_pipe(i, stream);
        }
    }

    /// One read into the capture (kept up to `max_output`, the rest
    /// dropped).
    fn read_exec_pipe(&mut self, i: usize, stream: usize) -> Pump {
        let Shim { execs, rbuf, .. } = self;
        let e = &mut execs[i];
        let Some((fd, _)) = &e.pipes[stream] else {
            return Pump::Eof;
        };
        match nix::unistd::read(fd, rbuf) {
            Ok(0) => Pump::Eof,
            Ok(n) => {
                let cap = &mut e.captured[stream];
                let keep = n.min(e.max_output.saturating_sub(cap.len()));
                cap.extend_from_slice(&rbuf[..keep]);
                Pump::Data
            }
            Err(Errno::EINTR) => Pump::Data,
            Err(Errno::EAGAIN) => Pump::Again,
            Err(_) => Pump::Eof,
        }
    }

    fn close_exec_pipe(&mut self, i: usize, stream: usize) {
        if let Some((fd, token)) = self.execs[i].pipes[stream].take() {
            self.poller.remove(&fd);
            self.sources.remove(&token);
        }
    }

    /// Reads what the pipes hold now (a grandchild may keep them open:
    /// no waiting for end of file), then closes them.
    fn drain_exec(&mut self, i: usize) {
        for stream in 0..2 {
            for _ in 0..DRAIN_READS {
                if self.read_exec_pipe(i, stream) != Pump::Data {
                    break;
                }
            }
            self.close_exec_pipe(i, stream);
        }
    }

    /// The runtime's exec process was reaped.
    pub(super) fn exec_exited(&mut self, i: usize, raw: i32) {
        self.drain_exec(i);
        let e = self.execs.remove(i);
        let (code, _) = exit_code(raw);
        // A runtime failure (no such binary, container gone) is in its log.
        let failure = if code != 0 {
            runtime::error_since(&e.log_file, 0)
        } else {
            None
        };
        let _ = fs::remove_file(&e.pid_file);
        let _ = fs::remove_file(&e.log_file);
        diag!(Level::Debug, "exec {} done: code {code}", e.serial);
        if let Some(conn) = e.conn {
            let [stdout, stderr] = e.captured;
            let resp = match failure {
                Some(msg) => error(ErrorKind::Runtime, msg),
                None => Response::ExecResult {
                    exit_code: code,
                    stdout,
                    stderr,
                    timed_out: false,
                },
            };
            self.respond(conn, &resp);
        }
    }

    /// The exec's timeout passed: SIGKILL the process and the runtime,
    /// answer with what was captured.
    pub(super) fn exec_timed_out(&mut self, serial: u64) {
        let Some(i) = self.execs.iter().position(|e| e.serial == serial) else {
            return;
        };
        let e = &mut self.execs[i];
        e.deadline = None;
        if let Some(pid) = fs::read_to_string(&e.pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            let _ = kill(pid, libc::SIGKILL);
        }
        let _ = kill(e.runtime_pid, libc::SIGKILL);
        diag!(Level::Info, "exec {serial} timed out");
        self.drain_exec(i);
        let e = &mut self.execs[i];
        if let Some(conn) = e.conn.take() {
            let resp = Response::ExecResult {
                exit_code: 128 + libc::SIGKILL,
                stdout: std::mem::take(&mut e.captured[0]),
                stderr: std::mem::take(&mut e.captured[1]),
                timed_out: true,
            };
            self.respond(conn, &resp);
        }
    }
}
