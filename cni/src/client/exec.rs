//! Running one plugin binary: the CNI execution protocol (spec section 3).
//!
//! The plugin gets its parameters in `CNI_*` environment variables and its
//! network configuration on stdin; it answers on stdout with a result or an
//! error object. The rest of the daemon's environment is inherited, as
//! libcni does (plugins such as portmap need `PATH` to find iptables).
//!
//! Each plugin runs in a process group of its own, so that on timeout the
//! whole group (a shell script's children too) is killed with SIGKILL; the
//! plugin itself is then reaped before returning, leaving no zombie.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::error::CniError;

/// Largest stdout accepted from a plugin.
const MAX_STDOUT: usize = 8 << 20;
/// How much of a failing plugin's stderr is kept (its tail).
const STDERR_TAIL: usize = 2048;
/// Attempts when the binary is busy being written (ETXTBSY), as libcni.
const SPAWN_ATTEMPTS: u32 = 5;

/// A CNI command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmd {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Cmd {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Cmd::Add => "ADD",
            Cmd::Del => "DEL",
            Cmd::Check => "CHECK",
            Cmd::Status => "STATUS",
            Cmd::Gc => "GC",
            Cmd::Version => "VERSION",
        }
    }

    /// Whether the command is about one attachment (and so gets
    /// `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME` and `CNI_ARGS`).
    fn per_attachment(self) -> bool {
        matches!(self, Cmd::Add | Cmd::Del | Cmd::Check)
    }
}

/// The per-attachment parameters of ADD, DEL and CHECK.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub container_id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
    pub args: &'a str,
}

/// One plugin invocation.
#[derive(Debug)]
pub(crate) struct Invocation<'a> {
    /// The plugin type, for messages.
    pub plugin: &'a str,
    pub binary: &'a Path,
    pub command: Cmd,
    pub target: Option<Target<'a>>,
    /// `CNI_PATH`: the bin dirs joined by ':'.
    pub cni_path: &'a str,
    pub stdin: &'a [u8],
    pub timeout: Duration,
}

/// A CNI error object (spec section "Error").
#[derive(Debug, Deserialize)]
struct ErrorObject {
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

/// Runs the plugin; returns its stdout when it exits 0.
pub(crate) async fn run(inv: &Invocation<'_>) -> Result<Vec<u8>, CniError> {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(inv.binary);
    cmd.env("CNI_COMMAND", inv.command.as_str())
        .env("CNI_PATH", inv.cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    match (&inv.target, inv.command.per_attachment()) {
        (Some(t), true) => {
            cmd.env("CNI_CONTAINERID", t.container_id)
                .env("CNI_NETNS", t.netns)
                .env("CNI_IFNAME", t.ifname)
                .env("CNI_ARGS", t.args);
        }
        _ => {
            for var in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS"] {
                cmd.env_remove(var);
            }
        }
    }

    let mut child = spawn(&mut cmd, inv).await?;
    // The plugin leads its own process group (process_group(0)), so its pid
    // is the group id. The child is not reaped before the kill below, so
    // the id cannot have been reused.
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let io = async {
        let write = async {
            if let Some(mut stdin) = stdin {
                // A plugin may exit without reading its config (VERSION does):
                // a broken pipe here is not an error.
                let _ = stdin.write_all(inv.stdin).await;
                let _ = stdin.shutdown().await;
            }
        };
        let out = read_capped(stdout);
        let err = read_tail(stderr);
        let ((), out, err) = tokio::join!(write, out, err);
        let status = child.wait().await;
        (status, out, err)
    };
    let outcome = tokio::time::timeout(inv.timeout, io).await;
    let (status, stdout, stderr) = match outcome {
        Ok(done) => done,
        Err(_) => {
            if let Some(pgid) = pgid {
                // ESRCH: the group is already gone; nothing else can fail.
                let _ = killpg(pgid, Signal::SIGKILL);
            }
            let _ = child.start_kill();
            // Reap the plugin itself; its killed children are reparented to
            // init (or the daemon's subreaper) and reaped there.
            let _ = child.wait().await;
            tracing::warn!(
                plugin = inv.plugin,
                command = inv.command.as_str(),
                timeout_ms = inv.timeout.as_millis() as u64,
                "CNI plugin timed out; killed its process group"
            );
            return Err(CniError::Timeout {
                plugin: inv.plugin.to_owned(),
                command: inv.command.as_str(),
                timeout: inv.timeout,
            });
        }
    };
    let status = status.map_err(|source| CniError::Spawn {
        plugin: inv.plugin.to_owned(),
        command: inv.command.as_str(),
        source,
    })?;
    tracing::debug!(
        plugin = inv.plugin,
        command = inv.command.as_str(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        status = %status,
        "CNI plugin finished"
    );
    let stdout = stdout.ok_or_else(|| CniError::BadResult {
        plugin: inv.plugin.to_owned(),
        command: inv.command.as_str(),
        reason: format!("more than {MAX_STDOUT} bytes on stdout"),
    })?;
    if status.success() {
        return Ok(stdout);
    }
    Err(failure(inv, status, &stdout, &stderr))
}

async fn spawn(
    cmd: &mut tokio::process::Command,
    inv: &Invocation<'_>,
) -> Result<tokio::process::Child, CniError> {
    let mut delay = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        match cmd.spawn() {
            Ok(child) => return Ok(child),
            Err(e)
                if e.raw_os_error() == Some(Errno::ETXTBSY as i32) && attempt < SPAWN_ATTEMPTS =>
            {
                // The binary is open for writing (being installed, or an fd
                // leaked into a concurrent fork): try again shortly.
                tracing::debug!(
                    plugin = inv.plugin,
                    attempt,
                    "CNI plugin binary busy; retrying"
                );
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(source) => {
                return Err(CniError::Spawn {
                    plugin: inv.plugin.to_owned(),
                    command: inv.command.as_str(),
                    source,
                });
            }
        }
    }
}

/// The error for a plugin that exited unsuccessfully.
fn failure(inv: &Invocation<'_>, status: ExitStatus, stdout: &[u8], stderr: &[u8]) -> CniError {
    let plugin = inv.plugin.to_owned();
    let command = inv.command.as_str();
    if let Ok(e) = serde_json::from_slice::<ErrorObject>(stdout) {
        tracing::debug!(
            plugin = inv.plugin,
            command,
            code = e.code,
            "CNI plugin returned an error object"
        );
        return CniError::Plugin {
            plugin,
            command,
            code: e.code,
            msg: e.msg,
            details: e.details,
        };
    }
    let text = String::from_utf8_lossy(stderr);
    CniError::PluginFailed {
        plugin,
        command,
        status: describe(status),
        stderr: text.trim().to_owned(),
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by {s}"),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => status.to_string(),
    }
}

/// All of `r`, or None if it exceeds [`MAX_STDOUT`] (the rest is drained so
/// the plugin does not block on a full pipe).
async fn read_capped(r: Option<impl AsyncRead + Unpin>) -> Option<Vec<u8>> {
    let Some(mut r) = r else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let mut over = false;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) if !over => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > MAX_STDOUT {
                    over = true;
                    out = Vec::new();
                }
            }
            Ok(_) => {}
        }
    }
    (!over).then_some(out)
}

/// The last [`STDERR_TAIL`] bytes of `r`.
async fn read_tail(r: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut r) = r else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > 2 * STDERR_TAIL {
                    out.drain(..out.len() - STDERR_TAIL);
                }
            }
        }
    }
    if out.len() > STDERR_TAIL {
        out.drain(..out.len() - STDERR_TAIL);
    }
    out
}
