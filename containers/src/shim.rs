//! berthd's side of the shim: starting one per pod and speaking its
//! protocol (`berth_shim::proto`: one JSON line each way per connection).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use berth_process::sealed::SealedExe;
use berth_shim::proto::{self, Request, Response};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::Mutex;

use crate::error::RuntimeError;

/// The longest state dir whose shim sockets fit a unix socket address:
/// `<state>/shims/<32 hex>/shim.sock` within 107 bytes.
pub const MAX_STATE_DIR: usize = 107 - "/shims/".len() - 32 - 1 - proto::SOCKET.len();

/// PATH for the shim and the OCI runtimes.
pub const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long a shim may take to start and answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Shims {
    bin: PathBuf,
    /// `<state>/shims`: one directory per pod.
    dir: PathBuf,
    starting: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Shims {
    pub fn new(bin: PathBuf, dir: PathBuf) -> Shims {
        Shims {
            bin,
            dir,
            starting: Default::default(),
        }
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The pod's shim directory (socket, pid file, exit records). Named by
    /// the first 32 hex digits of the pod id (128 bits: unique in practice)
    /// so the socket path fits a unix socket address (107 bytes) for any
    /// state dir of up to [`MAX_STATE_DIR`] bytes.
    pub fn dir(&self, pod_id: &str) -> PathBuf {
        self.dir.join(&pod_id[..pod_id.len().min(32)])
    }

    fn socket(&self, pod_id: &str) -> PathBuf {
        self.dir(pod_id).join(proto::SOCKET)
    }

    /// The exit record the shim wrote for a container, if any.
    pub fn exit_record(&self, pod_id: &str, id: &str) -> Option<proto::Exit> {
        let p = self.dir(pod_id).join(format!("{id}{}", proto::EXIT_SUFFIX));
        let bytes = std::fs::read(p).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Whether the pod's shim answers.
    pub async fn alive(&self, pod_id: &str) -> bool {
        matches!(
            call_at(&self.socket(pod_id), &Request::Hello, Some(START_TIMEOUT)).await,
            Ok(Response::Hello { .. })
        )
    }

    /// Starts the pod's shim unless it runs already, handing it `runtime`,
    /// the sealed copy of the pod's runtime it runs that runtime from.
    pub async fn ensure(&self, pod_id: &str, runtime: &Arc<SealedExe>) -> Result<(), RuntimeError> {
        let lock = {
            let mut m = self.starting.lock().unwrap_or_else(|e| e.into_inner());
            m.entry(pod_id.to_owned()).or_default().clone()
        };
        let _g = lock.lock().await;
        if self.alive(pod_id).await {
            return Ok(());
        }
        let dir = self.dir(pod_id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| RuntimeError::io(format!("creating {}", dir.display()), e))?;
        let shim_err = |message: String| RuntimeError::Shim {
            pod_id: pod_id.to_owned(),
            message,
        };
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.arg("--pod-id")
            .arg(pod_id)
            .arg("--dir")
            .arg(&dir)
            // Nothing of berthd's environment leaks to the shim and the
            // runtimes it starts (NOTIFY_SOCKET would make runc act as a
            // systemd notify proxy for the container).
            .env_clear()
            .env("PATH", SAFE_PATH)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        cmd.arg("--sealed-runtime").arg(runtime.source());
        let sealed = Arc::clone(runtime);
        // SAFETY: hand_over only makes async-signal-safe system calls (dup2,
        // fcntl) on a descriptor that stays open meanwhile (the closure
        // holds the copy).
        unsafe {
            cmd.pre_exec(move || {
                berth_process::sealed::hand_over(sealed.as_fd(), proto::SEALED_RUNTIME_FD)
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| shim_err(format!("starting {}: {e}", self.bin.display())))?;
        let out = tokio::time::timeout(START_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| shim_err("did not start within 10s".into()))?
            .map_err(|e| shim_err(format!("waiting for it to start: {e}")))?;
        if !out.status.success() {
            return Err(shim_err(format!(
                "exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        tracing::debug!(pod_id, shim_pid = %pid, "shim started");
        Ok(())
    }

    /// One request, one answer. `timeout` None waits as long as it takes
    /// (Wait, ExecSync bound themselves).
    pub async fn call(
        &self,
        pod_id: &str,
        req: &Request,
        timeout: Option<Duration>,
    ) -> Result<Response, RuntimeError> {
        answer(pod_id, call_at(&self.socket(pod_id), req, timeout).await)
    }

    /// A call to the pod's shim if one runs: None when nothing accepts on
    /// its socket (the shim is gone; nothing was sent). Saves asking Hello
    /// first.
    pub async fn call_if_up(
        &self,
        pod_id: &str,
        req: &Request,
        timeout: Option<Duration>,
    ) -> Result<Option<Response>, RuntimeError> {
        match call_at_detailed(&self.socket(pod_id), req, timeout).await {
            Err(CallError::Connect(_)) => Ok(None),
            other => answer(pod_id, other.map_err(String::from)).map(Some),
        }
    }

    /// A call that starts the pod's shim first when nothing answers its
    /// socket (the pod's first container): no Hello round trip when the
    /// shim runs. Retrying is safe: a refused connection sent nothing.
    pub async fn call_or_start(
        &self,
        pod_id: &str,
        runtime: &Arc<SealedExe>,
        req: &Request,
        timeout: Option<Duration>,
    ) -> Result<Response, RuntimeError> {
        match call_at_detailed(&self.socket(pod_id), req, timeout).await {
            Err(CallError::Connect(_)) => {
                self.ensure(pod_id, runtime).await?;
                self.call(pod_id, req, timeout).await
            }
            other => answer(pod_id, other.map_err(String::from)),
        }
    }

    /// A streaming call (Exec, Attach): sends `req` on a new connection and
    /// reads the first answer line together with the descriptors the shim
    /// sent with it (SCM_RIGHTS). The connection stays open for the rest
    /// of the exchange. Error answers become errors, as in [`Self::call`].
    pub async fn open(
        &self,
        pod_id: &str,
        req: &Request,
        timeout: Duration,
    ) -> Result<Opened, RuntimeError> {
        let opened = tokio::time::timeout(timeout, open_at(&self.socket(pod_id), req))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
        let opened = opened.map_err(|message| RuntimeError::Shim {
            pod_id: pod_id.to_owned(),
            message,
        })?;
        match opened.answer {
            Response::Error { kind, message } => Err(RuntimeError::from_shim(kind, message)),
            _ => Ok(opened),
        }
    }

    /// Stops the pod's shim (it kills what still runs) and removes its
    /// directory. A shim that is gone is fine.
    pub async fn shutdown(&self, pod_id: &str) -> Result<(), RuntimeError> {
        let sock = self.socket(pod_id);
        if sock.exists() {
            match call_at(&sock, &Request::Shutdown, Some(Duration::from_secs(30))).await {
                Ok(_) => {}
                Err(e) => tracing::warn!(pod_id, error = %e, "shim shutdown"),
            }
        }
        let dir = self.dir(pod_id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RuntimeError::io(format!("removing {}", dir.display()), e)),
        }
        self.starting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(pod_id);
        Ok(())
    }
}

/// An open streaming connection to a shim, after its first answer.
#[derive(Debug)]
pub struct Opened {
    pub stream: UnixStream,
    pub answer: Response,
    /// The descriptors that came with the answer, in the order sent;
    /// close-on-exec.
    pub fds: Vec<OwnedFd>,
    /// What was read past the answer's line (the next line, frames).
    pub rest: Vec<u8>,
}

/// Longest first answer of a streaming call.
const MAX_FIRST_LINE: usize = 64 * 1024;

async fn open_at(sock: &Path, req: &Request) -> Result<Opened, String> {
    let mut stream = UnixStream::connect(sock)
        .await
        .map_err(|e| format!("connecting to {}: {e}", sock.display()))?;
    let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .await
        .map_err(|e| format!("sending request: {e}"))?;
    let mut buf = Vec::new();
    let mut fds = Vec::new();
    let mut chunk = vec![0u8; 8192];
    let end = loop {
        stream
            .readable()
            .await
            .map_err(|e| format!("reading answer: {e}"))?;
        let got = stream.try_io(tokio::io::Interest::READABLE, || {
            recv_with_fds(stream.as_raw_fd(), &mut chunk, &mut fds)
        });
        match got {
            Ok(0) => return Err("closed the connection without answering".to_owned()),
            Ok(n) => {
                let start = buf.len();
                buf.extend_from_slice(&chunk[..n]);
                if let Some(p) = buf[start..].iter().position(|&b| b == b'\n') {
                    break start + p;
                }
                if buf.len() > MAX_FIRST_LINE {
                    return Err("answer too long".to_owned());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("reading answer: {e}")),
        }
    };
    let rest = buf.split_off(end + 1);
    let answer =
        serde_json::from_slice::<Response>(&buf).map_err(|e| format!("bad answer: {e}"))?;
    Ok(Opened {
        stream,
        answer,
        fds,
        rest,
    })
}

/// One `recvmsg` on a non-blocking socket: bytes into `buf`, descriptors
/// (SCM_RIGHTS, close-on-exec) appended to `fds`.
fn recv_with_fds(sock: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> std::io::Result<usize> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 8]);
    let msg = recvmsg::<()>(
        sock,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )?;
    let n = msg.bytes;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: SCM_RIGHTS installed these descriptors in this
            // process for this call; nothing else owns them.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(std::io::Error::other("descriptors truncated (MSG_CTRUNC)"));
    }
    Ok(n)
}

/// A shim's answer as berth's result: its Error answers become errors.
fn answer(pod_id: &str, r: Result<Response, String>) -> Result<Response, RuntimeError> {
    r.map_err(|message| RuntimeError::Shim {
        pod_id: pod_id.to_owned(),
        message,
    })
    .and_then(|r| match r {
        Response::Error { kind, message } => Err(RuntimeError::from_shim(kind, message)),
        r => Ok(r),
    })
}

/// Why a call to a shim failed.
#[derive(Debug)]
enum CallError {
    /// Nothing accepted the connection: no shim runs there, and the
    /// request was not sent.
    Connect(String),
    /// The exchange failed after connecting (or timed out).
    Exchange(String),
}

impl From<CallError> for String {
    fn from(e: CallError) -> String {
        match e {
            CallError::Connect(m) | CallError::Exchange(m) => m,
        }
    }
}

async fn call_at(
    sock: &Path,
    req: &Request,
    timeout: Option<Duration>,
) -> Result<Response, String> {
    call_at_detailed(sock, req, timeout)
        .await
        .map_err(String::from)
}

async fn call_at_detailed(
    sock: &Path,
    req: &Request,
    timeout: Option<Duration>,
) -> Result<Response, CallError> {
    let connect = UnixStream::connect(sock);
    let connected = match timeout {
        Some(t) => tokio::time::timeout(t, connect)
            .await
            .map_err(|_| CallError::Exchange(format!("no connection within {t:?}")))?,
        None => connect.await,
    };
    let stream = connected
        .map_err(|e| CallError::Connect(format!("connecting to {}: {e}", sock.display())))?;
    let exchange = async {
        let (r, mut w) = stream.into_split();
        let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
        line.push(b'\n');
        w.write_all(&line)
            .await
            .map_err(|e| format!("sending request: {e}"))?;
        let mut reader = BufReader::new(r);
        let mut answer = String::new();
        let n = reader
            .read_line(&mut answer)
            .await
            .map_err(|e| format!("reading answer: {e}"))?;
        if n == 0 {
            return Err("closed the connection without answering".to_owned());
        }
        serde_json::from_str::<Response>(&answer).map_err(|e| format!("bad answer: {e}"))
    };
    let answer = match timeout {
        Some(t) => tokio::time::timeout(t, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {t:?}"))),
        None => exchange.await,
    };
    answer.map_err(CallError::Exchange)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_to_a_gone_shim_is_none_and_sends_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let shims = Shims::new(PathBuf::from("/nonexistent"), tmp.path().to_owned());
        let pod = "0123456789abcdef0123456789abcdef01";
        // No socket at all.
        let r = shims.call_if_up(pod, &Request::Hello, None).await.unwrap();
        assert!(r.is_none());
        // A socket file nobody listens on (a shim killed with SIGKILL).
        std::fs::create_dir_all(shims.dir(pod)).unwrap();
        drop(std::os::unix::net::UnixListener::bind(shims.socket(pod)).unwrap());
        let r = shims.call_if_up(pod, &Request::Hello, None).await.unwrap();
        assert!(r.is_none());
        assert!(!shims.alive(pod).await);
    }

    #[tokio::test]
    async fn a_call_to_a_live_shim_gets_its_answer() {
        let tmp = tempfile::tempdir().unwrap();
        let shims = Shims::new(PathBuf::from("/nonexistent"), tmp.path().to_owned());
        let pod = "feedfacefeedfacefeedfacefeedface";
        std::fs::create_dir_all(shims.dir(pod)).unwrap();
        let listener = tokio::net::UnixListener::bind(shims.socket(pod)).unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut line = String::new();
            BufReader::new(r).read_line(&mut line).await.unwrap();
            assert!(line.contains("kill"), "{line}");
            w.write_all(b"{\"result\":\"ok\"}\n").await.unwrap();
        });
        let req = Request::Kill {
            id: "c".into(),
            signal: 15,
        };
        let r = shims
            .call_if_up(pod, &req, Some(Duration::from_secs(5)))
            .await;
        assert_eq!(r.unwrap(), Some(Response::Ok));
        server.await.unwrap();
    }
}
