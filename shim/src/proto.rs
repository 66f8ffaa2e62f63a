//! The shim's control protocol, spoken by berthd over the shim's unix
//! socket (`<shim dir>/shim.sock`, mode 0600).
//!
//! One request per connection: the client writes one JSON [`Request`]
//! terminated by `\n`, the shim answers with one JSON [`Response`] line and
//! closes the connection. Requests that take time (`Wait`, `ExecSync`) are
//! answered when done; the shim serves other connections meanwhile (it is
//! a single-threaded event loop).
//!
//! On-disk contract in the shim dir (berthd reads these after a restart,
//! also when the shim is gone):
//! - `shim.sock`: the control socket.
//! - `shim.pid`: the shim's pid, decimal, written before it answers.
//! - `<container-id>.exit`: an [`Exit`] as JSON, written atomically (temp
//!   file, rename; see `write_atomic` for why no fsync) when the container's init process is reaped. It
//!   is removed by `Delete`.
//!
//! Exceptions to one-line-each-way: [`Request::Exec`] (the answer carries
//! descriptors, a second line reports the exit, berthd may send
//! [`ExecControl`] lines meanwhile) and [`Request::Attach`] (the answer
//! may carry a descriptor and is followed by binary output frames).
//!
//! Starting a shim: `berth-shim --pod-id ID --dir DIR [--log-level LEVEL]`.
//! The process berthd starts binds the socket, forks the shim proper (own
//! session, child subreaper, stdio on /dev/null, reparented away from
//! berthd so it survives berthd's exit or kill -9), prints the shim's pid
//! and `\n` on stdout once the socket accepts connections, and exits 0. On
//! failure it exits non-zero with one line on stderr. The shim's own
//! diagnostics go to `DIR/shim.log`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change; `Hello` reports it.
pub const VERSION: u32 = 1;

/// Name of the control socket inside the shim dir.
pub const SOCKET: &str = "shim.sock";
/// The descriptor on which berthd hands a shim started with
/// `--sealed-runtime PATH` the sealed copy of that runtime
/// (berth_process::sealed); the shim runs the runtime from it.
pub const SEALED_RUNTIME_FD: std::os::fd::RawFd = 3;
/// Name of the pid file inside the shim dir.
pub const PID_FILE: &str = "shim.pid";
/// Suffix of exit records inside the shim dir: `<container-id>.exit`.
pub const EXIT_SUFFIX: &str = ".exit";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Liveness and identity; answered with [`Response::Hello`].
    Hello,
    /// Creates a container with `<runtime> create`: the shim makes the
    /// stdio pipes, keeps their other ends, and becomes the parent of the
    /// container's init process (subreaper). Answered with
    /// [`Response::Created`] once the runtime's create has returned.
    Create(Create),
    /// `<runtime> start ID`. Answered with `Ok` when it returned.
    Start { id: String },
    /// Sends `signal` to the container's init process (directly: the shim
    /// is its parent, so the pid cannot have been reused). A container that
    /// already exited is not an error. Answered with `Ok`.
    Kill { id: String, signal: i32 },
    /// Answered with [`Response::Exited`] once the container's init process
    /// has been reaped (at once if it already was).
    Wait { id: String },
    /// `<runtime> delete --force ID`, then forgets the container and removes
    /// its exit record. Unknown ids are `Ok`.
    Delete { id: String },
    /// Runs a process in the container (`<runtime> exec --process FILE
    /// --pid-file ...`), captures its output and waits for it. Answered
    /// with [`Response::ExecResult`].
    ExecSync(ExecSync),
    /// Starts a process in the container whose stdio berthd holds (see
    /// [`Exec`]): answered at once with [`Response::ExecStarted`] carrying
    /// the descriptors (SCM_RIGHTS), then, on the same connection, with
    /// [`Response::ExecExited`] when the process has been reaped. Meanwhile
    /// berthd may write [`ExecControl`] lines on the connection. Closing the
    /// connection early leaves the process running (the shim drains its
    /// output and reaps it).
    Exec(Exec),
    /// Attaches to a running container's stdio: answered with
    /// [`Response::Attached`] (with the container's stdin as SCM_RIGHTS
    /// when asked and kept open), then live output as binary frames (see
    /// [`FRAME_HEADER`]) until the container exits or berthd closes the
    /// connection (detach).
    Attach {
        id: String,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    /// Closes and reopens the container's log file (log rotation).
    ReopenLog { id: String },
    /// Answered with [`Response::Containers`]: what the shim knows.
    List,
    /// SIGKILLs every container still running, reaps them, removes the
    /// socket and exits. Answered with `Ok` before exiting.
    Shutdown,
}

/// How to invoke the OCI runtime (runc command line conventions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    /// The runtime binary.
    pub path: PathBuf,
    /// `--root DIR` (its state directory), when set.
    pub root: Option<PathBuf>,
    /// `--systemd-cgroup` (cgroupsPath is `slice:prefix:name`).
    pub systemd_cgroup: bool,
    /// Extra global options placed before the command, verbatim.
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Create {
    pub id: String,
    /// OCI bundle directory (config.json; `root.path` is absolute).
    pub bundle: PathBuf,
    pub runtime: Runtime,
    /// Where the CRI log goes (absolute). None: output is read and dropped.
    pub log_path: Option<PathBuf>,
    /// Keep the container's stdin pipe open (for a later attach). When
    /// false its stdin is a pipe already at end of file.
    pub stdin: bool,
    /// With `stdin`: once the first attach that took the container's stdin
    /// ends, the shim closes its stdin write end (the CRI's `stdin_once`;
    /// the container sees end of file once berthd closed its copy too). A
    /// TTY container sees no end of file: its pty master stays open for
    /// the output.
    #[serde(default)]
    pub stdin_once: bool,
    /// The container has a terminal (`process.terminal`): the runtime gets
    /// a console socket and the pty master replaces the stdio pipes; all
    /// output is logged as `stdout`.
    #[serde(default)]
    pub tty: bool,
    /// The container's memory cgroup directory (v1: the memory controller's
    /// directory; v2: the unified one), to tell an OOM kill from another
    /// SIGKILL when the container exits. None: never reported as OOM.
    pub memory_cgroup: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSync {
    /// The container to exec in (must be running).
    pub id: String,
    /// An OCI `process` JSON file written by berthd.
    pub process: PathBuf,
    /// 0: no timeout. Otherwise the process (and the runtime's exec) are
    /// SIGKILLed after this long and the result says `timed_out`.
    pub timeout_ms: u64,
    /// At most this many bytes of each of stdout and stderr are kept; the
    /// rest is read and dropped.
    pub max_output: u64,
}

/// A streaming exec: `<runtime> exec --detach --process FILE --pid-file F
/// [--tty --console-socket S] ID`; the exec'd process is then a child of
/// the shim (subreaper), which reaps it and reports its exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exec {
    /// The container to exec in (must be running).
    pub id: String,
    /// An OCI `process` JSON file written by berthd; its `terminal` must
    /// equal `tty`.
    pub process: PathBuf,
    /// A pseudo-terminal: its master is the one descriptor sent.
    pub tty: bool,
    /// Without a terminal: send the write end of the process's stdin pipe.
    /// When false the process's stdin is a pipe already at end of file.
    pub stdin: bool,
}

/// What berthd may write, one JSON line each, on an [`Request::Exec`]
/// connection after [`Response::ExecStarted`], or on an
/// [`Request::Attach`] connection after [`Response::Attached`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ExecControl {
    /// Exec: sends `signal` to the exec'd process (not to its children).
    /// A process that already exited is not an error; nothing is
    /// answered.
    Kill { signal: i32 },
    /// Attach: the client's stdin ended. For a `stdin_once` container
    /// whose stdin this attach took, the container's stdin is closed now
    /// (as when the attach ends); output keeps coming.
    CloseStdin,
}

/// Which stream a descriptor sent with [`Response::ExecStarted`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamFd {
    /// The write end of the process's stdin pipe.
    Stdin,
    /// The read end of the process's stdout pipe.
    Stdout,
    /// The read end of the process's stderr pipe.
    Stderr,
    /// The pty master: write for stdin, read for the output (stdout and
    /// stderr together); EIO when read after the process is gone.
    Pty,
}

/// Attach output frames after [`Response::Attached`]: `[stream: u8][length:
/// u32 big-endian][length bytes]`, stream [`FRAME_STDOUT`] or
/// [`FRAME_STDERR`] (a TTY container's output is all stdout).
pub const FRAME_HEADER: usize = 5;
/// Frame stream byte of stdout.
pub const FRAME_STDOUT: u8 = 1;
/// Frame stream byte of stderr.
pub const FRAME_STDERR: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Hello {
        version: u32,
        pid: u32,
        pod_id: String,
    },
    Created {
        /// The container init process's pid (host pid namespace).
        pid: u32,
    },
    Ok,
    Exited(Exit),
    ExecResult {
        /// Exit status; 128 + signal number when killed by a signal.
        exit_code: i32,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
        timed_out: bool,
    },
    Containers {
        containers: Vec<ContainerState>,
    },
    /// The exec'd process runs. Sent with SCM_RIGHTS carrying one
    /// descriptor per entry of `fds`, in that order: non-TTY `[stdin]
    /// (only when asked), stdout, stderr`; TTY `[pty]`. They are
    /// close-on-exec in berthd once received with `MSG_CMSG_CLOEXEC`, and
    /// may share `O_NONBLOCK` with the shim's copies (set it anyway).
    ExecStarted {
        /// The exec'd process (host pid namespace).
        pid: u32,
        fds: Vec<StreamFd>,
    },
    /// The exec'd process was reaped; the last line on the connection.
    ExecExited {
        /// Exit status; 128 + signal number when killed by a signal.
        exit_code: i32,
        signal: Option<i32>,
    },
    /// Attached. When `stdin`, one descriptor comes with this line
    /// (SCM_RIGHTS): a dup of the container's stdin write end, or of its
    /// pty master when `tty` (write only: the shim reads the output).
    Attached {
        tty: bool,
        stdin: bool,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No container with that id in this shim.
    NotFound,
    /// `Create` for an id the shim already has.
    AlreadyExists,
    /// The request does not fit the container's state (start twice, exec
    /// in a stopped container).
    InvalidState,
    /// The OCI runtime failed; the message carries its error (from its
    /// `--log` file, else its stderr).
    Runtime,
    /// Malformed request.
    Invalid,
    /// A system call failed in the shim.
    Io,
}

/// How a container's init process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub pid: u32,
    /// The exit status; 128 + signal number when killed by a signal (as a
    /// shell reports it, and as kubelet expects: 137 for SIGKILL).
    pub exit_code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// When it was reaped, nanoseconds since the Unix epoch.
    pub finished_at_ns: i64,
    /// Killed by the kernel's OOM killer (the memory cgroup's oom_kill
    /// count rose while the container ran).
    pub oom_killed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Created,
    Running,
    Exited,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub pid: u32,
    pub status: Status,
    pub exit: Option<Exit>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json_lines() {
        let r = Request::Kill {
            id: "c1".into(),
            signal: 15,
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(s, r#"{"op":"kill","id":"c1","signal":15}"#);
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r);
        let s = serde_json::to_string(&Response::Ok).unwrap();
        assert_eq!(s, r#"{"result":"ok"}"#);
    }

    #[test]
    fn streaming_messages() {
        let r = Request::Exec(Exec {
            id: "c1".into(),
            process: "/b/p.json".into(),
            tty: false,
            stdin: true,
        });
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(
            s,
            r#"{"op":"exec","id":"c1","process":"/b/p.json","tty":false,"stdin":true}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r);
        let k: ExecControl = serde_json::from_str(r#"{"op":"kill","signal":9}"#).unwrap();
        assert_eq!(k, ExecControl::Kill { signal: 9 });
        let s = serde_json::to_string(&Response::ExecStarted {
            pid: 7,
            fds: vec![StreamFd::Stdin, StreamFd::Stdout, StreamFd::Stderr],
        })
        .unwrap();
        assert_eq!(
            s,
            r#"{"result":"exec_started","pid":7,"fds":["stdin","stdout","stderr"]}"#
        );
        let s = serde_json::to_string(&Response::ExecExited {
            exit_code: 137,
            signal: Some(9),
        })
        .unwrap();
        assert_eq!(s, r#"{"result":"exec_exited","exit_code":137,"signal":9}"#);
        let a: Request = serde_json::from_str(
            r#"{"op":"attach","id":"c","stdin":true,"stdout":true,"stderr":false}"#,
        )
        .unwrap();
        assert!(matches!(
            a,
            Request::Attach {
                stdin: true,
                stderr: false,
                ..
            }
        ));
        // An older berthd's Create (no stdin_once) still parses.
        let c: Create = serde_json::from_str(
            r#"{"id":"c","bundle":"/b","runtime":{"path":"/r","root":null,"systemd_cgroup":false,"options":[]},"log_path":null,"stdin":true,"memory_cgroup":null}"#,
        )
        .unwrap();
        assert!(c.stdin && !c.stdin_once && !c.tty);
    }
}
