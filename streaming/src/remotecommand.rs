//! Remote command (exec and attach), independent of the transport: the
//! client's streams (stdin, stdout, stderr, resize, error) wired to a
//! backend [`Process`] until it ends, then its outcome on the error stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::backend::{BoxFuture, Ended, OutputStream, Process, TerminalSize};
use crate::status::Outcome;

/// The SPDY remote command protocols, most preferred first.
pub const SPDY_PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// How the error stream reports the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    /// metav1.Status JSON (v4, v5).
    Json,
    /// Plain text, nothing on success (v1 to v3).
    Text,
}

/// A boxed reader from the client.
pub type ClientReader = Box<dyn AsyncRead + Send + Unpin>;
/// A boxed writer to the client.
pub type ClientWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// The client's side of a remote command, whatever the transport.
pub struct Wiring {
    pub stdin: Option<ClientReader>,
    pub stdout: Option<ClientWriter>,
    pub stderr: Option<ClientWriter>,
    /// JSON terminal sizes, one after another.
    pub resize: Option<ClientReader>,
    pub error: ClientWriter,
    pub status: StatusFormat,
    /// Resolves when the client's connection is gone.
    pub gone: BoxFuture<'static, ()>,
}

impl std::fmt::Debug for Wiring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wiring")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// When data last moved, for the idle timeout.
#[derive(Debug, Clone)]
pub struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Activity {
    /// Data moved now.
    pub fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing moved for `idle`.
    pub async fn idle(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let due = last + idle;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// How a remote command session ended, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The process ended and the client heard how.
    Finished(Outcome),
    /// The client went away first; the process was aborted.
    ClientGone,
    /// Nothing moved for the idle timeout; the process was aborted.
    Idle,
}

/// Copies the client's stdin to the process until either ends; the
/// process's stdin is closed afterwards (end of file).
async fn copy_stdin(
    mut from: ClientReader,
    mut to: Box<dyn AsyncWrite + Send + Unpin>,
    activity: Activity,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                activity.touch();
                let Some(chunk) = buf.get(..n) else { break };
                if to.write_all(chunk).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

/// Applies each terminal size the client sends.
async fn apply_resizes(mut from: ClientReader, resize: crate::backend::Resizer) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
        let mut consumed = 0;
        {
            let mut it = serde_json::Deserializer::from_slice(&pending).into_iter::<TerminalSize>();
            loop {
                match it.next() {
                    Some(Ok(size)) => {
                        consumed = it.byte_offset();
                        resize(size);
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    // Not a size: the rest of the stream is ignored.
                    Some(Err(_)) => return,
                    None => {
                        consumed = it.byte_offset();
                        break;
                    }
                }
            }
        }
        pending.drain(..consumed);
        if pending.len() > 4096 {
            return;
        }
    }
}

/// Runs one remote command: `process` wired to the client's streams until
/// the process ends (its outcome then goes to the error stream), the
/// client goes away, or nothing moves for `idle`.
pub async fn serve(
    mut process: Process,
    mut wiring: Wiring,
    cmd: &[String],
    idle: Duration,
) -> SessionEnd {
    let activity = Activity::default();
    activity.touch();
    let stdin_task = match (wiring.stdin.take(), process.stdin.take()) {
        (Some(from), Some(to)) => Some(tokio::spawn(copy_stdin(from, to, activity.clone()))),
        // The client sends no stdin, or the process takes none: its
        // stdin (if any) is closed by dropping it here.
        _ => None,
    };
    let resize_task = match (wiring.resize.take(), process.resize.take()) {
        (Some(from), Some(r)) => Some(tokio::spawn(apply_resizes(from, r))),
        _ => None,
    };
    let abort_tasks = || {
        if let Some(t) = &stdin_task {
            t.abort();
        }
        if let Some(t) = &resize_task {
            t.abort();
        }
    };

    let mut ended: Option<Result<Ended, String>> = None;
    let mut output_open = true;
    // One wait for the whole session: a backend's wait need not be
    // cancel-safe.
    let mut wait = process.control.wait();
    let end = loop {
        if !output_open && let Some(ended) = ended.take() {
            break Ok(ended);
        }
        tokio::select! {
            chunk = process.output.recv(), if output_open => match chunk {
                None => output_open = false,
                Some(chunk) => {
                    activity.touch();
                    let w = match chunk.stream {
                        OutputStream::Stdout => wiring.stdout.as_mut(),
                        // A client that asked for no stderr gets none; a
                        // terminal has merged it into stdout already.
                        OutputStream::Stderr => wiring.stderr.as_mut(),
                    };
                    if let Some(w) = w
                        && (w.write_all(&chunk.data).await.is_err() || w.flush().await.is_err())
                    {
                        break Err(SessionEnd::ClientGone);
                    }
                }
            },
            res = &mut wait, if ended.is_none() => ended = Some(res),
            () = &mut wiring.gone => break Err(SessionEnd::ClientGone),
            () = activity.idle(idle) => break Err(SessionEnd::Idle),
        }
    };
    drop(wait);
    abort_tasks();
    let outcome = match end {
        Err(why) => {
            process.control.abort().await;
            return why;
        }
        Ok(Ok(Ended::Exited(0)) | Ok(Ended::Closed)) => Outcome::Success,
        Ok(Ok(Ended::Exited(code))) => Outcome::ExitCode {
            code,
            cmd: cmd.to_vec(),
        },
        Ok(Err(message)) => Outcome::Internal(message),
    };
    for w in [wiring.stdout.as_mut(), wiring.stderr.as_mut()]
        .into_iter()
        .flatten()
    {
        let _ = w.shutdown().await;
    }
    let report = match wiring.status {
        StatusFormat::Json => outcome.status_json(),
        StatusFormat::Text => outcome.text().into_bytes(),
    };
    if !report.is_empty() {
        let _ = wiring.error.write_all(&report).await;
    }
    let _ = wiring.error.shutdown().await;
    SessionEnd::Finished(outcome)
}
