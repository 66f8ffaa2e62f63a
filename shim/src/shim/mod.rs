//! The shim proper: startup (bind, fork away, readiness) and the
//! single-threaded event loop that ties the concerns together.
//!
//! - `poller`: epoll and tokens;
//! - `server`: the control socket and its requests;
//! - `container`: container records, stdio pipes and their log pumping;
//! - `console`: the console socket of TTY containers;
//! - `crilog`: the CRI log format and log files;
//! - `reaper`: SIGCHLD, reaping, exit records, OOM detection;
//! - `runtime`: OCI runtime command lines and bounded synchronous calls;
//! - `exec`: ExecSync processes;
//! - `session`: connections that stay open (streaming exec, attach);
//! - `stream`: streaming exec (stdio handed to berthd);
//! - `attach`: live output to and stdin from berthd.

#[macro_use]
pub mod diag;
pub mod attach;
pub mod console;
pub mod container;
pub mod crilog;
pub mod exec;
pub mod footprint;
pub mod poller;
pub mod reaper;
pub mod runtime;
pub mod server;
pub mod session;
pub mod stream;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Instant;

use berth_shim::proto;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::epoll::{EpollEvent, EpollFlags};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::ForkResult;

use container::Container;
use diag::Level;
use exec::Exec;
use poller::{LISTENER, Poller, SIGNALS};
use server::Conn;
use stream::StreamExec;

/// Bytes read from a pipe or socket per wakeup (one shared buffer).
const READ_BUF: usize = 16 * 1024;

/// Command line of the shim.
#[derive(Debug)]
pub struct Args {
    pub pod_id: String,
    pub dir: PathBuf,
    pub log_level: Level,
    /// `--sealed-runtime PATH`: descriptor [`proto::SEALED_RUNTIME_FD`] is a
    /// sealed copy of the runtime binary at PATH (berth_process::sealed);
    /// the shim runs that runtime from it.
    pub sealed_runtime: Option<PathBuf>,
}

const USAGE: &str = "usage: berth-shim --pod-id ID --dir DIR [--log-level error|warn|info|debug] [--sealed-runtime PATH]";

impl Args {
    pub fn parse(mut argv: impl Iterator<Item = OsString>) -> Result<Args, String> {
        let mut pod_id = None;
        let mut dir = None;
        let mut log_level = Level::Info;
        let mut sealed_runtime = None;
        while let Some(a) = argv.next() {
            let a = a.into_string().map_err(|_| USAGE.to_string())?;
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(OsString::from(v))),
                _ => (a, None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| argv.next())
                    .ok_or_else(|| format!("{name} needs a value; {USAGE}"))
            };
            match name.as_str() {
                "--pod-id" => {
                    pod_id = Some(
                        value()?
                            .into_string()
                            .map_err(|_| "--pod-id is not UTF-8".to_string())?,
                    )
                }
                "--dir" => dir = Some(PathBuf::from(value()?)),
                "--log-level" => {
                    let v = value()?;
                    log_level = v
                        .to_str()
                        .and_then(Level::parse)
                        .ok_or_else(|| format!("unknown log level {v:?}; {USAGE}"))?;
                }
                "--sealed-runtime" => sealed_runtime = Some(PathBuf::from(value()?)),
                "-h" | "--help" => return Err(USAGE.to_string()),
                _ => return Err(format!("unknown argument {name:?}; {USAGE}")),
            }
        }
        let pod_id = pod_id.filter(|p| !p.is_empty()).ok_or(USAGE)?;
        let dir = dir.filter(|d| !d.as_os_str().is_empty()).ok_or(USAGE)?;
        // The shim chdirs to /: a relative dir is made absolute first.
        let dir = std::path::absolute(&dir).map_err(|e| format!("--dir {}: {e}", dir.display()))?;
        Ok(Args {
            pod_id,
            dir,
            log_level,
            sealed_runtime,
        })
    }
}

/// What the event loop dispatches on, by token.
#[derive(Debug)]
pub enum Source {
    Conn(Conn),
    /// A container's stdout (0) or stderr (1).
    CtrOut {
        ctr: u64,
        stream: usize,
    },
    /// An exec's stdout (0) or stderr (1).
    ExecOut {
        exec: u64,
        stream: usize,
    },
    /// A streaming exec's output copy being drained (berthd went away).
    ExecDrain {
        exec: u64,
        idx: usize,
    },
}

/// Shutdown in progress: answered once every container is reaped.
#[derive(Debug)]
pub struct Shutdown {
    conns: Vec<u64>,
    deadline: Instant,
    answered: bool,
}

#[derive(Debug)]
pub struct Shim {
    pod_id: String,
    dir: PathBuf,
    poller: Poller,
    listener: Option<UnixListener>,
    sigfd: SignalFd,
    sources: BTreeMap<u64, Source>,
    containers: Vec<Container>,
    execs: Vec<Exec>,
    /// Streaming execs.
    streams: Vec<StreamExec>,
    serial: u64,
    /// Shared read buffer.
    rbuf: Box<[u8]>,
    /// Shared buffer of formatted log lines.
    out: Vec<u8>,
    /// A synchronous runtime call in progress: its pid and, once reaped,
    /// its wait status.
    sync: Option<(i32, Option<i32>)>,
    /// Unknown children reaped during runtime calls: (pid, wait status).
    orphans: Vec<(i32, i32)>,
    shutdown: Option<Shutdown>,
}

/// Entry point of the binary: returns the process exit code of the
/// started process (the forked shim never returns here).
pub fn main(argv: impl Iterator<Item = OsString>) -> i32 {
    let args = match Args::parse(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("berth-shim: {e}");
            return 2;
        }
    };
    match launch(args) {
        Ok(pid) => {
            let mut out = io::stdout().lock();
            if writeln!(out, "{pid}").and_then(|()| out.flush()).is_err() {
                return 1;
            }
            0
        }
        Err(e) => {
            eprintln!("berth-shim: {e}");
            1
        }
    }
}

/// Binds the socket, forks the shim proper and waits for it to be ready.
/// Returns its pid.
fn launch(args: Args) -> Result<u32, String> {
    let keep = args
        .sealed_runtime
        .as_ref()
        .map(|_| proto::SEALED_RUNTIME_FD);
    close_inherited_fds(keep);
    if let Some(path) = &args.sealed_runtime {
        // SAFETY: berthd passed this descriptor for the shim to own; it was
        // kept open above and is taken exactly once, here.
        let fd = unsafe { OwnedFd::from_raw_fd(proto::SEALED_RUNTIME_FD) };
        let sealed = berth_process::sealed::SealedExe::from_fd(fd, path.clone())
            .map_err(|e| format!("--sealed-runtime {}: {e}", path.display()))?;
        runtime::use_sealed(sealed);
    }
    if !args.dir.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&args.dir)
            .map_err(|e| format!("creating {}: {e}", args.dir.display()))?;
    }
    let sock = args.dir.join(proto::SOCKET);
    if fs::symlink_metadata(&sock).is_ok() {
        if UnixStream::connect(&sock).is_ok() {
            return Err(format!("a shim already serves {}", sock.display()));
        }
        fs::remove_file(&sock).map_err(|e| format!("removing stale {}: {e}", sock.display()))?;
    }
    let listener = bind_private(&sock)?;
    let log = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(args.dir.join("shim.log"))
        .map_err(|e| format!("opening shim.log: {e}"))?;
    let (ready_r, ready_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;

    // SAFETY: the process is single-threaded here (no thread was spawned),
    // so the child may run any code after fork.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Parent { .. } => {
            drop(ready_w);
            drop(listener);
            let mut msg = String::new();
            let _ = File::from(ready_r).read_to_string(&mut msg);
            match msg.trim_end().split_once(' ') {
                Some(("ok", pid)) => pid.parse().map_err(|_| format!("bad readiness {msg:?}")),
                Some(("err", e)) => {
                    let _ = fs::remove_file(&sock);
                    Err(e.to_string())
                }
                _ => {
                    let _ = fs::remove_file(&sock);
                    Err("the shim died while starting".to_string())
                }
            }
        }
        ForkResult::Child => {
            drop(ready_r);
            diag::init(log, args.log_level);
            let code = match Shim::setup(args, listener) {
                Ok(mut shim) => {
                    let pid = std::process::id();
                    let _ = nix::unistd::write(&ready_w, format!("ok {pid}\n").as_bytes());
                    drop(ready_w);
                    diag!(Level::Info, "shim {pid} serving pod {}", shim.pod_id);
                    let dropped = footprint::drop_startup_pages();
                    diag!(
                        Level::Debug,
                        "dropped {} KiB of startup mappings",
                        dropped >> 10
                    );
                    shim.run();
                    shim.cleanup_files();
                    diag!(Level::Info, "shim {pid} exiting");
                    0
                }
                Err(e) => {
                    diag!(Level::Error, "startup: {e}");
                    let _ = nix::unistd::write(&ready_w, format!("err {e}\n").as_bytes());
                    1
                }
            };
            std::process::exit(code);
        }
    }
}

/// Binds and listens on `path` with mode 0600.
fn bind_private(path: &Path) -> Result<UnixListener, String> {
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let l = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let l = l.map_err(|e| format!("binding {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    l.set_nonblocking(true)
        .map_err(|e| format!("socket: {e}"))?;
    Ok(l)
}

/// Closes every descriptor above stderr that the starter leaked to us, but
/// `keep`.
fn close_inherited_fds(keep: Option<RawFd>) {
    let Ok(dir) = fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2 && Some(fd) != keep)
        .collect();
    for fd in fds {
        // The directory's own descriptor is closed by now: skip what is
        // not open any more.
        if nix::fcntl::fcntl(
            // SAFETY: `fd` is only borrowed for this call; F_GETFD on a
            // closed descriptor fails with EBADF, which is checked.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            nix::fcntl::FcntlArg::F_GETFD,
        )
        .is_err()
        {
            continue;
        }
        // SAFETY: at startup nothing in this program owns descriptors above
        // 2 (std opens none before main); these were inherited from the
        // parent and are closed exactly once here.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}

/// Sets `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// The signals the shim takes through its signalfd: SIGCHLD to reap, and
/// the termination signals it ignores (berthd stops it with Shutdown).
/// Blocked rather than ignored, so the runtime and containers it starts
/// get default dispositions (a child's signal mask is reset by spawn).
fn signal_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        set.add(s);
    }
    set
}

impl Shim {
    /// Runs in the forked child: detach, become subreaper, set up the loop,
    /// write the pid file.
    fn setup(args: Args, listener: UnixListener) -> io::Result<Shim> {
        nix::unistd::setsid()?;
        nix::sys::prctl::set_child_subreaper(true)?;
        let set = signal_set();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        let sigfd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        let null = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?;
        nix::unistd::dup2_stdin(&null)?;
        nix::unistd::dup2_stdout(&null)?;
        nix::unistd::dup2_stderr(&null)?;
        drop(null);
        std::env::set_current_dir("/")?;
        tune_malloc();

        let poller = Poller::new()?;
        poller.add_fixed(&listener, LISTENER, EpollFlags::EPOLLIN)?;
        poller.add_fixed(&sigfd, SIGNALS, EpollFlags::EPOLLIN)?;
        let shim = Shim {
            pod_id: args.pod_id,
            dir: args.dir,
            poller,
            listener: Some(listener),
            sigfd,
            sources: BTreeMap::new(),
            containers: Vec::new(),
            execs: Vec::new(),
            streams: Vec::new(),
            serial: 0,
            rbuf: vec![0; READ_BUF].into_boxed_slice(),
            out: Vec::new(),
            sync: None,
            orphans: Vec::new(),
            shutdown: None,
        };
        reaper::write_atomic(
            &shim.dir.join(proto::PID_FILE),
            format!("{}\n", std::process::id()).as_bytes(),
        )?;
        Ok(shim)
    }

    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// The event loop; returns after Shutdown.
    fn run(&mut self) {
        let mut events = [EpollEvent::empty(); 32];
        loop {
            if self.finished() {
                return;
            }
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            let n = match self.poller.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => {
                    diag!(Level::Error, "epoll_wait: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    0
                }
            };
            for ev in &events[..n] {
                self.dispatch(ev.data(), ev.events());
            }
            self.fire_timers(Instant::now());
        }
    }

    fn dispatch(&mut self, token: u64, ev: EpollFlags) {
        match token {
            LISTENER => self.accept(),
            SIGNALS => self.reap(),
            _ => match self.sources.get(&token) {
                Some(Source::Conn(_)) => self.conn_event(token, ev),
                Some(&Source::CtrOut { ctr, stream }) => self.container_output(ctr, stream),
                Some(&Source::ExecOut { exec, stream }) => self.exec_output(exec, stream),
                Some(&Source::ExecDrain { exec, idx }) => self.exec_drain(exec, idx),
                None => {}
            },
        }
    }

    /// The earliest timer: request deadlines, exec timeouts, shutdown.
    fn next_deadline(&self) -> Option<Instant> {
        let conns = self.sources.values().filter_map(|s| match s {
            Source::Conn(c) => c.deadline,
            _ => None,
        });
        let execs = self.execs.iter().filter_map(|e| e.deadline);
        let streams = self.streams.iter().filter_map(|e| e.deadline);
        let shut = self.shutdown.as_ref().map(|s| s.deadline);
        conns.chain(execs).chain(streams).chain(shut).min()
    }

    fn fire_timers(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .sources
            .iter()
            .filter_map(|(t, s)| match s {
                Source::Conn(c) if c.deadline.is_some_and(|d| d <= now) => Some(*t),
                _ => None,
            })
            .collect();
        for t in expired {
            diag!(Level::Warn, "closing a connection that timed out");
            self.close_conn(t);
        }
        let timed_out: Vec<u64> = self
            .execs
            .iter()
            .filter(|e| e.deadline.is_some_and(|d| d <= now))
            .map(|e| e.serial)
            .collect();
        for serial in timed_out {
            self.exec_timed_out(serial);
        }
        let slow: Vec<u64> = self
            .streams
            .iter()
            .filter(|e| e.deadline.is_some_and(|d| d <= now))
            .map(|e| e.serial)
            .collect();
        for serial in slow {
            self.stream_start_timed_out(serial);
        }
        if let Some(s) = &self.shutdown
            && s.deadline <= now
            && !s.answered
        {
            diag!(Level::Warn, "shutdown: containers not reaped in time");
            self.answer_shutdown();
        }
    }

    /// Shutdown answered and every answer written (or given up on).
    fn finished(&self) -> bool {
        let Some(s) = &self.shutdown else {
            return false;
        };
        if !s.answered {
            return false;
        }
        let writing = self
            .sources
            .values()
            .any(|s| matches!(s, Source::Conn(c) if c.is_writing()));
        !writing || s.deadline <= Instant::now()
    }

    /// Removes the socket and pid file (at Shutdown).
    fn cleanup_files(&mut self) {
        if let Some(l) = self.listener.take() {
            self.poller.remove(&l);
        }
        let _ = fs::remove_file(self.dir.join(proto::SOCKET));
        let _ = fs::remove_file(self.dir.join(proto::PID_FILE));
    }
}

/// glibc's malloc keeps freed memory of big buffers (exec output) unless
/// told otherwise: fixed mmap threshold (no dynamic growth), small trim
/// threshold and top pad.
fn tune_malloc() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tunables; called while
    // single-threaded, before the loop allocates anything big.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 * 1024);
        libc::mallopt(libc::M_TOP_PAD, 16 * 1024);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(a: &[&str]) -> Result<Args, String> {
        Args::parse(a.iter().map(OsString::from))
    }

    #[test]
    fn arguments() {
        let a = parse(&["--pod-id", "p1", "--dir", "/run/x", "--log-level", "debug"]).unwrap();
        assert_eq!(
            (a.pod_id.as_str(), a.dir.as_path()),
            ("p1", Path::new("/run/x"))
        );
        assert_eq!(a.log_level, Level::Debug);
        let a = parse(&["--dir=/d", "--pod-id=p"]).unwrap();
        assert_eq!(a.log_level, Level::Info);
        assert!(parse(&["--pod-id", "p"]).is_err());
        let a = parse(&["--pod-id", "p", "--dir", "rel"]).unwrap();
        assert!(a.dir.is_absolute() && a.dir.ends_with("rel"));
        assert!(parse(&["--pod-id", "p", "--dir", ""]).is_err());
        assert!(parse(&["--pod-id", "p", "--dir", "/d", "--log-level", "loud"]).is_err());
        assert!(parse(&["--pod-id", "p", "--dir"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }
}
