//! OCI runtime invocation (runc command line conventions): global
//! options, error messages from the runtime's JSON `--log`, and bounded
//! synchronous calls that keep reaping meanwhile.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::OnceLock;

use berth_process::sealed::SealedExe;
use berth_shim::proto::Runtime;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, poll};
use serde::Deserialize;

use super::Shim;
use super::container::Pump;
use super::diag::Level;
use super::reaper::exit_code;

/// Bound of `create`.
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound of `start` and `delete`.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// After a timed-out call was SIGKILLed: how long to wait for its exit.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// Kept of a runtime's own stdout/stderr, for an error message.
const CAPTURE_MAX: usize = 4096;
/// Read of a runtime log at most (its tail), for an error message.
const LOG_TAIL_MAX: u64 = 64 * 1024;

/// The runtime's global options: `[--root R] [--systemd-cgroup]
/// [options...] --log LOG --log-format json`.
pub fn global_args(rt: &Runtime, log: &Path) -> Vec<OsString> {
    let mut a = Vec::with_capacity(rt.options.len() + 6);
    if let Some(root) = &rt.root {
        a.push("--root".into());
        a.push(root.into());
    }
    if rt.systemd_cgroup {
        a.push("--systemd-cgroup".into());
    }
    a.extend(rt.options.iter().map(OsString::from));
    a.push("--log".into());
    a.push(log.into());
    a.push("--log-format".into());
    a.push("json".into());
    a
}

/// The sealed copy of the runtime berthd handed this shim, if any.
static SEALED: OnceLock<SealedExe> = OnceLock::new();

/// Runs the runtime at `sealed.source()` from `sealed` from now on.
pub fn use_sealed(sealed: SealedExe) {
    let _ = SEALED.set(sealed);
}

pub fn command(rt: &Runtime, log: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    // berth-runtime runs code inside the container's namespaces: it runs
    // from berthd's sealed copy, never from the host file
    // (berth_process::sealed). argv[0] still names the file.
    let mut cmd = match SEALED.get().filter(|s| s.source() == rt.path) {
        Some(sealed) => {
            let mut c = Command::new(sealed.exec_path());
            c.arg0(&rt.path);
            c
        }
        None => Command::new(&rt.path),
    };
    cmd.args(global_args(rt, log));
    // The shim's blocked and ignored signals would reach the container
    // through the runtime (berth_process::signals).
    // SAFETY: reset_signals is async-signal-safe; nothing else runs
    // between fork and exec.
    unsafe {
        cmd.pre_exec(|| berth_process::signals::reset_signals().map_err(std::io::Error::from));
    }
    cmd
}

#[derive(Deserialize)]
struct LogEntry {
    #[serde(default)]
    level: String,
    #[serde(default, alias = "message")]
    msg: Option<String>,
}

/// The message of the last `"level":"error"` entry of JSON log lines.
pub fn last_error(log: &[u8]) -> Option<String> {
    log.split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice::<LogEntry>(l).ok())
        .filter(|e| e.level.eq_ignore_ascii_case("error") || e.level.eq_ignore_ascii_case("fatal"))
        .filter_map(|e| e.msg)
        .next_back()
}

/// Size of a log file (where a call's entries will start).
pub fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The last error a runtime logged at or after `offset`.
pub fn error_since(path: &Path, offset: u64) -> Option<String> {
    let mut f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let start = offset.max(len.saturating_sub(LOG_TAIL_MAX)).min(len);
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut buf = Vec::new();
    f.take(LOG_TAIL_MAX).read_to_end(&mut buf).ok()?;
    last_error(&buf)
}

/// The last non-empty line of some output, as a message.
pub fn last_line(out: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(out);
    s.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(str::to_string)
}

/// A failed runtime call.
#[derive(Debug)]
pub struct Failure {
    /// The runtime's own message (its log, else its output), if any.
    pub detail: Option<String>,
    /// What happened to the process (exit status, timeout, spawn error).
    pub summary: String,
}

impl Failure {
    pub fn message(self) -> String {
        self.detail.unwrap_or(self.summary)
    }
}

/// The outcome of [`Shim::run_sync`].
#[derive(Debug)]
pub struct Outcome {
    /// Raw wait status; None when it was killed at the deadline and still
    /// not reaped.
    pub raw: Option<i32>,
    pub timed_out: bool,
    /// The tail of what it wrote on a captured stdout/stderr.
    pub output: Vec<u8>,
}

/// Pipes for a runtime call whose own stdio the shim captures: stdin at
/// end of file, stdout and stderr into one pipe. Returns the child's
/// stdio and the read end.
fn capture_pipes() -> io::Result<([OwnedFd; 3], OwnedFd)> {
    let (in_r, in_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    drop(in_w);
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let err_w = out_w.try_clone()?;
    super::set_nonblocking(&out_r)?;
    Ok(([in_r, out_w, err_w], out_r))
}

impl Shim {
    /// Runs `<runtime> <global options> <args>` and waits for it, at most
    /// `timeout`. `stdio`: the process's stdin, stdout and stderr; None
    /// captures them (stdin at end of file).
    pub(super) fn call_runtime(
        &mut self,
        rt: &Runtime,
        log: &Path,
        args: &[&OsStr],
        stdio: Option<[OwnedFd; 3]>,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let verb = args
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        let offset = log_len(log);
        let mut cmd = command(rt, log);
        cmd.args(args);
        let spawn_failure = |e: io::Error| Failure {
            detail: None,
            summary: format!("running {} {verb}: {e}", rt.path.display()),
        };
        let (child_stdio, capture) = match stdio {
            Some(s) => (s, None),
            None => {
                let (s, cap) = capture_pipes().map_err(spawn_failure)?;
                (s, Some(cap))
            }
        };
        let [i, o, e] = child_stdio;
        cmd.stdin(Stdio::from(i))
            .stdout(Stdio::from(o))
            .stderr(Stdio::from(e));
        let started = Instant::now();
        let outcome = self
            .run_sync(cmd, capture, timeout)
            .map_err(spawn_failure)?;
        diag!(
            Level::Debug,
            "{} {verb}: {:?} in {:?}",
            rt.path.display(),
            outcome.raw.map(exit_code),
            started.elapsed()
        );
        let code = outcome.raw.map(|r| exit_code(r).0);
        if code == Some(0) && !outcome.timed_out {
            return Ok(());
        }
        let detail = error_since(log, offset).or_else(|| last_line(&outcome.output));
        let summary = if outcome.timed_out {
            format!(
                "{} {verb} timed out after {}s",
                rt.path.display(),
                timeout.as_secs()
            )
        } else {
            let (code, sig) = exit_code(outcome.raw.unwrap_or(0));
            match sig {
                Some(s) => format!("{} {verb} killed by signal {s}", rt.path.display()),
                None => format!("{} {verb} exited with status {code}", rt.path.display()),
            }
        };
        diag!(Level::Warn, "{summary}");
        Err(Failure { detail, summary })
    }

    /// Spawns `cmd` and waits for its exit, at most `timeout` (then
    /// SIGKILLs it). Other children are reaped meanwhile, as usual.
    pub(super) fn run_sync(
        &mut self,
        mut cmd: Command,
        mut capture: Option<OwnedFd>,
        timeout: Duration,
    ) -> io::Result<Outcome> {
        let child = cmd.spawn()?;
        // Close the child's ends of its pipes here.
        drop(cmd);
        let pid = child.id() as i32;
        drop(child);
        self.sync = Some((pid, None));
        let mut deadline = Instant::now() + timeout;
        let mut timed_out = false;
        let mut output = Vec::new();
        let raw = loop {
            self.reap();
            if let Some((_, Some(raw))) = self.sync {
                break Some(raw);
            }
            let now = Instant::now();
            if now >= deadline {
                if timed_out {
                    break None;
                }
                let _ = kill(pid, libc::SIGKILL);
                timed_out = true;
                deadline = now + KILL_GRACE;
                continue;
            }
            let wait = super::poller::poll_timeout(Some(deadline - now));
            let readable = {
                let mut fds = Vec::with_capacity(2);
                fds.push(PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN));
                if let Some(c) = &capture {
                    fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, wait) {
                    Ok(_) => fds.get(1).and_then(|f| f.any()).unwrap_or(false),
                    Err(Errno::EINTR) => false,
                    Err(e) => return Err(e.into()),
                }
            };
            if readable
                && let Some(c) = &capture
                && self.read_capture(c, &mut output) == Pump::Eof
            {
                capture = None;
            }
        };
        self.sync = None;
        if let Some(c) = &capture {
            while self.read_capture(c, &mut output) == Pump::Data {}
        }
        Ok(Outcome {
            raw,
            timed_out,
            output,
        })
    }

    /// One read of a runtime's captured output, keeping the last
    /// [`CAPTURE_MAX`] bytes.
    fn read_capture(&mut self, fd: &OwnedFd, output: &mut Vec<u8>) -> Pump {
        match nix::unistd::read(fd, &mut self.rbuf) {
            Ok(0) => Pump::Eof,
            Err(Errno::EAGAIN) => Pump::Again,
            Err(Errno::EINTR) => Pump::Data,
            Err(_) => Pump::Eof,
            Ok(n) => {
                output.extend_from_slice(&self.rbuf[..n]);
                if output.len() > CAPTURE_MAX {
                    output.drain(..output.len() - CAPTURE_MAX);
                }
                Pump::Data
            }
        }
    }
}

/// `kill(pid, sig)` for any signal number, real-time ones included (the
/// typed wrappers of nix and rustix refuse those).
pub fn kill(pid: i32, sig: i32) -> nix::Result<()> {
    if pid <= 0 {
        return Err(Errno::EINVAL);
    }
    // SAFETY: kill(2) takes plain integers and has no memory effects; a
    // positive pid addresses exactly one process (never a group).
    Errno::result(unsafe { libc::kill(pid, sig) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn rt() -> Runtime {
        Runtime {
            path: "/usr/sbin/runc".into(),
            root: None,
            systemd_cgroup: false,
            options: vec![],
        }
    }

    #[test]
    fn global_options_in_order() {
        let log = Path::new("/b/runtime.log");
        assert_eq!(
            global_args(&rt(), log),
            ["--log", "/b/runtime.log", "--log-format", "json"].map(OsString::from)
        );
        let r = Runtime {
            root: Some(PathBuf::from("/run/berth/runc")),
            systemd_cgroup: true,
            options: vec!["--debug".into(), "--rootless=false".into()],
            ..rt()
        };
        assert_eq!(
            global_args(&r, log),
            [
                "--root",
                "/run/berth/runc",
                "--systemd-cgroup",
                "--debug",
                "--rootless=false",
                "--log",
                "/b/runtime.log",
                "--log-format",
                "json"
            ]
            .map(OsString::from)
        );
    }

    #[test]
    fn error_messages_from_json_logs() {
        let log = br#"{"level":"warning","msg":"w","time":"t"}
{"level":"error","msg":"first","time":"t"}
not json
{"level":"info","msg":"i"}
{"level":"error","msg":"runc create failed: unable to start container process: exec: \"nope\": executable file not found in $PATH","time":"t"}
{"level":"debug","msg":"d"}
"#;
        assert_eq!(
            last_error(log).as_deref(),
            Some(
                "runc create failed: unable to start container process: exec: \"nope\": executable file not found in $PATH"
            )
        );
        assert_eq!(last_error(br#"{"level":"info","msg":"i"}"#), None);
        assert_eq!(last_error(b""), None);
        assert_eq!(
            last_error(br#"{"level":"ERROR","message":"youki style"}"#).as_deref(),
            Some("youki style")
        );
    }

    #[test]
    fn errors_since_an_offset() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("runtime.log");
        assert_eq!(error_since(&p, 0), None);
        std::fs::write(&p, "{\"level\":\"error\",\"msg\":\"old\"}\n").unwrap();
        let off = log_len(&p);
        assert_eq!(error_since(&p, off), None);
        assert_eq!(error_since(&p, 0).as_deref(), Some("old"));
        let mut s = std::fs::read_to_string(&p).unwrap();
        s.push_str("{\"level\":\"error\",\"msg\":\"new\"}\n");
        std::fs::write(&p, s).unwrap();
        assert_eq!(error_since(&p, off).as_deref(), Some("new"));
    }

    #[test]
    fn last_output_line() {
        assert_eq!(last_line(b"a\nb  \n\n").as_deref(), Some("b"));
        assert_eq!(last_line(b"\n \n"), None);
    }
}
