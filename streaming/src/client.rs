//! The client side of the streaming protocols, as kubectl and crictl
//! speak them: `berth exec`, `attach` and `port-forward`, the tests and
//! the benchmarks use it (a real client of the server, over TCP).

use std::io;

use base64::Engine;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub use crate::backend::TerminalSize;

/// Which upgrade a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// SPDY/3.1 (what kubelet and crictl use by default).
    #[default]
    Spdy,
    /// WebSocket (`v5.channel.k8s.io`; port-forward tunnels SPDY in it).
    WebSocket,
}

/// Why a streaming client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `http://host:port/path`.
    #[error("bad streaming URL {0:?}")]
    Url(String),
    /// Connecting or talking to the server failed.
    #[error("streaming connection: {0}")]
    Io(#[from] io::Error),
    /// The server refused the upgrade; its status and message.
    #[error("the server refused the upgrade: {status}: {message}")]
    Refused { status: u16, message: String },
    /// The server broke the protocol.
    #[error("streaming protocol: {0}")]
    Protocol(String),
    /// The server reported a failure on the error stream.
    #[error("{0}")]
    Remote(String),
}

/// `host:port` and path of an `http://` or `https://` URL.
pub fn split_url(url: &str) -> Result<(String, String), ClientError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| ClientError::Url(url.to_owned()))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (rest.get(..i).unwrap_or(rest), rest.get(i..).unwrap_or("/")),
        None => (rest, "/"),
    };
    if host.is_empty() {
        return Err(ClientError::Url(url.to_owned()));
    }
    Ok((host.to_owned(), path.to_owned()))
}

/// A connection to the server, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The certificates `https://` URLs are checked against (set once per
/// process with [`trust`]); without it an `https://` URL is refused.
static TRUST: std::sync::OnceLock<std::sync::Arc<rustls::ClientConfig>> =
    std::sync::OnceLock::new();

/// Trusts the PEM certificates in `ca` (a streaming server's own
/// certificate, or the CA that signed it) for `https://` URLs.
pub fn trust(ca: &std::path::Path) -> Result<(), ClientError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let bad = |e: &dyn std::fmt::Display| ClientError::Url(format!("{}: {e}", ca.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(&e))? {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let _ = TRUST.set(std::sync::Arc::new(cfg));
    Ok(())
}

/// Connects to the server `url` names: `host:port`, path, and the
/// connection (TLS for `https://`).
async fn connect(url: &str) -> Result<(String, String, Box<dyn Io>), ClientError> {
    let (host, path) = split_url(url)?;
    let sock = TcpStream::connect(&host).await?;
    sock.set_nodelay(true)?;
    if !url.starts_with("https://") {
        return Ok((host, path, Box::new(sock)));
    }
    let cfg = TRUST.get().ok_or_else(|| {
        ClientError::Url(format!(
            "{url}: an https URL needs a trusted certificate (--streaming-ca)"
        ))
    })?;
    let name = host
        .rsplit_once(':')
        .map_or(host.as_str(), |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let name = rustls_pki_types::ServerName::try_from(name)
        .map_err(|e| ClientError::Url(format!("{url}: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(cfg.clone())
        .connect(name, sock)
        .await?;
    Ok((host, path, Box::new(tls)))
}

/// The connection after a successful upgrade; bytes the server sent right
/// after its response stay buffered.
pub type Upgraded = BufReader<Box<dyn Io>>;

/// POSTs an upgrade request to `url` (HTTP/1.1) and reads the response:
/// the connection once the server switched protocols, and the response's
/// headers (lowercased names).
pub async fn upgrade(
    url: &str,
    upgrade: &str,
    headers: &[(&str, &str)],
) -> Result<(Upgraded, Vec<(String, String)>), ClientError> {
    let (host, path, sock) = connect(url).await?;
    let mut io = BufReader::new(sock);
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: {upgrade}\r\nContent-Length: 0\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    io.get_mut().write_all(req.as_bytes()).await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 * 1024 {
            return Err(ClientError::Protocol("response headers too long".into()));
        }
        let b = io.read_u8().await?;
        head.push(b);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Protocol(format!("bad status line {status_line:?}")))?;
    let hdrs: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if status != 101 {
        let len: usize = hdrs
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
            .min(64 * 1024);
        let mut body = vec![0u8; len];
        let _ = io.read_exact(&mut body).await;
        return Err(ClientError::Refused {
            status,
            message: String::from_utf8_lossy(&body).trim().to_owned(),
        });
    }
    Ok((io, hdrs))
}

/// What a remote command asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommandOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// The local ends of a remote command.
pub struct LocalIo {
    pub stdin: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub stdout: Box<dyn AsyncWrite + Send + Unpin>,
    pub stderr: Box<dyn AsyncWrite + Send + Unpin>,
    /// Terminal sizes to send (the first one at once).
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
}

impl std::fmt::Debug for LocalIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalIo").finish_non_exhaustive()
    }
}

/// The exit status a status report names: 0 for success, the code of a
/// `NonZeroExitCode`, an error for anything else. The protocols this
/// client asks for (v4, v5) always end with a report: none means the
/// connection was lost before the command ended.
pub fn exit_code_of(status: &[u8]) -> Result<i32, ClientError> {
    if status.is_empty() {
        return Err(ClientError::Protocol(
            "the connection ended without the command's exit status".into(),
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(status)
        .map_err(|_| ClientError::Remote(String::from_utf8_lossy(status).trim().to_owned()))?;
    if v["status"] == "Success" {
        return Ok(0);
    }
    if v["reason"] == "NonZeroExitCode"
        && let Some(code) = v["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["reason"] == "ExitCode")
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.parse().ok())
    {
        return Ok(code);
    }
    Err(ClientError::Remote(
        v["message"]
            .as_str()
            .unwrap_or("remote command failed")
            .to_owned(),
    ))
}

fn size_json(s: TerminalSize) -> Vec<u8> {
    format!("{{\"Width\":{},\"Height\":{}}}", s.width, s.height).into_bytes()
}

/// Runs a remote command over a WebSocket (`v5.channel.k8s.io`, else
/// `v4.channel.k8s.io`); returns its exit status.
pub async fn remote_command_ws(
    url: &str,
    opts: CommandOptions,
    mut local: LocalIo,
) -> Result<i32, ClientError> {
    let (host, path, sock) = connect(url).await?;
    let mut req = format!("ws://{host}{path}")
        .into_client_request()
        .map_err(|e| ClientError::Url(e.to_string()))?;
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "v5.channel.k8s.io, v4.channel.k8s.io"
            .parse()
            .map_err(|_| ClientError::Protocol("header".into()))?,
    );
    let (ws, resp) = tokio_tungstenite::client_async(req, sock)
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(r) => ClientError::Refused {
                status: r.status().as_u16(),
                message: String::from_utf8_lossy(r.body().as_deref().unwrap_or_default())
                    .trim()
                    .to_owned(),
            },
            e => ClientError::Protocol(e.to_string()),
        })?;
    let v5 = resp
        .headers()
        .get("sec-websocket-protocol")
        .is_some_and(|p| p.as_bytes() == b"v5.channel.k8s.io");
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    // Every task of the session dies with it (a dropped client future
    // closes the connection, as a killed kubectl would).
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    if let (true, Some(mut stdin)) = (opts.stdin, local.stdin.take()) {
        let tx = tx.clone();
        tasks.spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut m = Vec::with_capacity(n + 1);
                m.push(0u8);
                m.extend_from_slice(buf.get(..n).unwrap_or_default());
                if tx.send(Message::Binary(m.into())).await.is_err() {
                    return;
                }
            }
            if v5 {
                let _ = tx
                    .send(Message::Binary(Bytes::from_static(&[255, 0])))
                    .await;
            }
        });
    }
    if let (true, Some(mut sizes)) = (opts.tty, local.resize.take()) {
        let tx = tx.clone();
        tasks.spawn(async move {
            while let Some(s) = sizes.recv().await {
                let mut m = vec![4u8];
                m.extend_from_slice(&size_json(s));
                if tx.send(Message::Binary(m.into())).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut status = Vec::new();
    while let Some(msg) = stream.next().await {
        let data = match msg {
            Ok(Message::Binary(b)) => b.to_vec(),
            Ok(Message::Text(t)) => {
                // Only the base64 protocols send text; not asked for.
                let t = t.as_bytes();
                let mut v = vec![t.first().copied().unwrap_or(b'0').wrapping_sub(b'0')];
                v.extend(
                    base64::engine::general_purpose::STANDARD
                        .decode(t.get(1..).unwrap_or_default())
                        .unwrap_or_default(),
                );
                v
            }
            Ok(Message::Close(_)) => break,
            Ok(_) => continue,
            Err(e) => return Err(ClientError::Protocol(e.to_string())),
        };
        let Some((ch, rest)) = data.split_first() else {
            continue;
        };
        match ch {
            1 => local.stdout.write_all(rest).await?,
            2 => local.stderr.write_all(rest).await?,
            3 => status.extend_from_slice(rest),
            _ => {}
        }
        if *ch == 1 {
            local.stdout.flush().await?;
        }
    }
    local.stdout.flush().await?;
    local.stderr.flush().await?;
    drop(tx);
    tasks.abort_all();
    exit_code_of(&status)
}

/// Copies a stream's data to `to` until its end (the write half is
/// dropped at once: the client never writes there).
async fn drain_to(
    s: Option<crate::spdy::Stream>,
    to: &mut (dyn AsyncWrite + Send + Unpin),
) -> io::Result<()> {
    if let Some(s) = s {
        let (mut rd, wr) = s.into_split();
        drop(wr);
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    to.write_all(buf.get(..n).unwrap_or_default()).await?;
                    to.flush().await?;
                }
            }
        }
    }
    to.flush().await
}

/// Runs a remote command over SPDY/3.1 (`v4.channel.k8s.io`); returns
/// its exit status.
pub async fn remote_command_spdy(
    url: &str,
    opts: CommandOptions,
    mut local: LocalIo,
) -> Result<i32, ClientError> {
    let (io, _) = upgrade(
        url,
        "SPDY/3.1",
        &[("X-Stream-Protocol-Version", "v4.channel.k8s.io")],
    )
    .await?;
    let session = crate::spdy::client(io, crate::spdy::Limits::default());
    let open = |kind: &'static str, wanted: bool| {
        let session = session.clone();
        async move {
            if !wanted {
                return Ok(None);
            }
            session
                .open(crate::spdy::Headers::new().with("streamtype", kind), false)
                .await
                .map(Some)
                .map_err(|e| ClientError::Protocol(format!("opening the {kind} stream: {e}")))
        }
    };
    // As client-go: the error stream first.
    let error = open("error", true).await?;
    let stdin = open("stdin", opts.stdin).await?;
    let stdout = open("stdout", opts.stdout).await?;
    let stderr = open("stderr", opts.stderr && !opts.tty).await?;
    let resize = open("resize", opts.tty).await?;
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(s) = stdin {
        let (_, mut to) = s.into_split();
        let from = local.stdin.take();
        tasks.spawn(async move {
            if let Some(mut from) = from {
                let _ = tokio::io::copy(&mut from, &mut to).await;
            }
            let _ = to.shutdown().await;
        });
    }
    if let (Some(s), Some(mut sizes)) = (resize, local.resize.take()) {
        let (_, mut to) = s.into_split();
        tasks.spawn(async move {
            while let Some(size) = sizes.recv().await {
                if to.write_all(&size_json(size)).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut status = Vec::new();
    let read_status = async {
        if let Some(e) = error {
            let (mut rd, wr) = e.into_split();
            drop(wr);
            let _ = rd.read_to_end(&mut status).await;
        }
    };
    let (out, err, ()) = tokio::join!(
        drain_to(stdout, &mut *local.stdout),
        drain_to(stderr, &mut *local.stderr),
        read_status
    );
    tasks.abort_all();
    session.close();
    out?;
    err?;
    exit_code_of(&status)
}

/// A port-forward session: connections to the pod's ports, each an error
/// and a data stream (SPDY `portforward.k8s.io`, straight or tunnelled in
/// a WebSocket as kubectl 1.31+ does).
#[derive(Debug)]
pub struct PortForwarder {
    session: crate::spdy::Handle,
    next_request: std::sync::atomic::AtomicU64,
}

impl PortForwarder {
    /// Opens the session at `url`.
    pub async fn connect(url: &str, transport: Transport) -> Result<PortForwarder, ClientError> {
        let session = match transport {
            Transport::Spdy => {
                let (io, _) = upgrade(
                    url,
                    "SPDY/3.1",
                    &[("X-Stream-Protocol-Version", "portforward.k8s.io")],
                )
                .await?;
                crate::spdy::client(io, crate::spdy::Limits::default())
            }
            Transport::WebSocket => {
                let (host, path, sock) = connect(url).await?;
                let mut req = format!("ws://{host}{path}")
                    .into_client_request()
                    .map_err(|e| ClientError::Url(e.to_string()))?;
                req.headers_mut().insert(
                    "sec-websocket-protocol",
                    tokio_tungstenite::tungstenite::http::HeaderValue::from_static(
                        crate::ws::SPDY_TUNNEL,
                    ),
                );
                let (ws, _) = tokio_tungstenite::client_async(req, sock)
                    .await
                    .map_err(|e| ClientError::Protocol(e.to_string()))?;
                crate::spdy::client(crate::ws::tunnel(ws), crate::spdy::Limits::default())
            }
        };
        Ok(PortForwarder {
            session,
            next_request: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// A new connection to `port` in the pod: its data stream, and a
    /// future that resolves to the server's error for it (empty: none).
    pub async fn open(
        &self,
        port: u16,
    ) -> Result<(crate::spdy::Stream, crate::spdy::RecvStream), ClientError> {
        let id = self
            .next_request
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_string();
        let port = port.to_string();
        let headers = |kind: &str| {
            crate::spdy::Headers::new()
                .with("streamtype", kind)
                .with("port", port.as_str())
                .with("requestid", id.as_str())
        };
        let err = self
            .session
            .open(headers("error"), false)
            .await
            .map_err(|e| ClientError::Protocol(format!("opening an error stream: {e}")))?;
        let (err_rd, err_wr) = err.into_split();
        drop(err_wr);
        let data = self
            .session
            .open(headers("data"), false)
            .await
            .map_err(|e| ClientError::Protocol(format!("opening a data stream: {e}")))?;
        Ok((data, err_rd))
    }

    /// Ends the session.
    pub fn close(&self) {
        self.session.close();
    }
}

/// Forwards one local connection through `pf` to `port`: bytes both ways
/// until both sides ended; the server's error for it, if any.
pub async fn forward_connection(
    pf: &PortForwarder,
    port: u16,
    local: TcpStream,
) -> Result<(), ClientError> {
    let (data, err) = pf.open(port).await?;
    splice_connection(data, err, local).await
}

/// Carries `local` over a connection already opened with
/// [`PortForwarder::open`]: bytes both ways until both sides ended; the
/// server's error for it, if any.
pub async fn splice_connection(
    data: crate::spdy::Stream,
    mut err: crate::spdy::RecvStream,
    local: TcpStream,
) -> Result<(), ClientError> {
    let (mut data_rd, mut data_wr) = data.into_split();
    let (mut l_rd, mut l_wr) = local.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut l_rd, &mut data_wr).await;
        let _ = data_wr.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut data_rd, &mut l_wr).await;
        let _ = l_wr.shutdown().await;
    };
    let mut message = Vec::new();
    let error = async {
        let _ = err.read_to_end(&mut message).await;
    };
    tokio::join!(up, down, error);
    if message.is_empty() {
        Ok(())
    } else {
        Err(ClientError::Remote(
            String::from_utf8_lossy(&message).into_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_and_path() {
        let (h, p) = split_url("http://127.0.0.1:3000/exec/abc").unwrap();
        assert_eq!((h.as_str(), p.as_str()), ("127.0.0.1:3000", "/exec/abc"));
        let (h, _) = split_url("http://[::1]:80/x").unwrap();
        assert_eq!(h, "[::1]:80");
        assert!(split_url("ftp://x/").is_err());
        assert!(split_url("http:///x").is_err());
    }

    #[test]
    fn status_reports_become_exit_codes() {
        let three = crate::status::Outcome::ExitCode {
            code: 3,
            cmd: vec![],
        };
        assert_eq!(exit_code_of(&three.status_json()).unwrap(), 3);
        assert_eq!(
            exit_code_of(&crate::status::Outcome::Success.status_json()).unwrap(),
            0
        );
        assert!(
            exit_code_of(b"").is_err(),
            "no report: the connection was lost"
        );
        let e = exit_code_of(&crate::status::Outcome::Internal("boom".into()).status_json());
        assert!(e.unwrap_err().to_string().contains("boom"));
        assert!(exit_code_of(b"plain text error").is_err());
    }
}
