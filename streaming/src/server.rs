//! The HTTP side: berthd's streaming server. Each URL names what it was
//! issued for (`/exec/<token>`, `/attach/<token>`, `/portforward/<token>`);
//! the client upgrades the connection to SPDY/3.1 or to a WebSocket and
//! the protocol code takes over.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderMap, HeaderValue, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::backend::Backend;
use crate::config::Config;
use crate::remotecommand::{self, StatusFormat, Wiring};
use crate::tokens::{IssueError, StreamRequest, Tokens};
use crate::ws;

/// A client must send its request headers within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The SPDY port-forward protocol.
pub const PORT_FORWARD_SPDY: &str = "portforward.k8s.io";
/// The header SPDY clients offer their protocols in.
const STREAM_PROTOCOL: &str = "x-stream-protocol-version";
/// What a refused SPDY negotiation lists.
const ACCEPTED_PROTOCOLS: &str = "x-accepted-stream-protocol-versions";
/// The largest WebSocket message accepted from a client.
const MAX_WS_MESSAGE: usize = 1 << 20;

/// The part of the server the CRI calls use: issuing URLs.
#[derive(Debug)]
pub struct Streaming {
    tokens: Tokens,
    base: String,
    addr: SocketAddr,
}

impl Streaming {
    /// The URL a client opens for `req` (usable once, for the configured
    /// time).
    pub fn url(&self, req: StreamRequest) -> Result<String, IssueError> {
        let kind = req.kind();
        let token = self.tokens.issue(req)?;
        Ok(format!("{}/{kind}/{token}", self.base))
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A session slot (of `max_sessions`), held while the connection or the
/// session it became lives.
type Slot = Arc<tokio::sync::OwnedSemaphorePermit>;

pub(crate) struct Server<B> {
    streaming: Arc<Streaming>,
    pub(crate) backend: Arc<B>,
    pub(crate) idle: Duration,
}

/// A bound, not yet serving, streaming server.
pub struct Bound {
    listener: TcpListener,
    streaming: Arc<Streaming>,
    pub(crate) idle: Duration,
    max_sessions: usize,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Binds the server as `config` says. URLs can be issued at once; they
/// are served once [`serve`] runs.
pub async fn bind(config: &Config) -> std::io::Result<(Arc<Streaming>, Bound)> {
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    let listener = TcpListener::bind(SocketAddr::new(config.address, config.port)).await?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let streaming = Arc::new(Streaming {
        tokens: Tokens::new(config.url_ttl, config.max_pending_urls),
        base: format!("{scheme}://{addr}"),
        addr,
    });
    Ok((
        streaming.clone(),
        Bound {
            listener,
            streaming,
            idle: config.idle_timeout,
            max_sessions: config.max_sessions,
            tls,
        },
    ))
}

/// The TLS side of `[streaming] tls_cert` and `tls_key` (PEM).
fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |path: &std::path::Path, what: &str, e: &dyn std::fmt::Display| {
        std::io::Error::other(format!("{what} {}: {e}", path.display()))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(cert, "reading the certificate chain", &e))?;
    if chain.is_empty() {
        return Err(bad(
            cert,
            "reading the certificate chain",
            &"no certificate in it",
        ));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, "reading the private key", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| bad(cert, "using the certificate and key of", &e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// Serves one connection (plain or TLS) with hyper.
async fn serve_conn<B, I>(io: I, server: Arc<Server<B>>, permit: Slot, peer: SocketAddr)
where
    B: Backend,
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let (server, permit) = (server.clone(), permit.clone());
        async move { Ok::<_, Infallible>(server.handle(req, permit)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "streaming: connection");
    }
}

/// Serves `bound` with `backend` until the returned task is aborted.
pub fn serve<B: Backend>(bound: Bound, backend: Arc<B>) -> JoinHandle<()> {
    let Bound {
        listener,
        streaming,
        idle,
        max_sessions,
        tls,
    } = bound;
    let server = Arc::new(Server {
        streaming,
        backend,
        idle,
    });
    let sessions = Arc::new(Semaphore::new(max_sessions));
    tokio::spawn(async move {
        loop {
            // A connection is accepted only with a session slot free:
            // the rest wait in the backlog, holding no descriptor here.
            let Ok(permit) = sessions.clone().acquire_owned().await else {
                return;
            };
            let (sock, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "streaming: accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = sock.set_nodelay(true);
            let server = server.clone();
            // Held by the connection and by the session it upgrades to
            // (which outlives the HTTP connection's future).
            let permit = Arc::new(permit);
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => serve_conn(sock, server, permit, peer).await,
                    Some(tls) => {
                        match tokio::time::timeout(HEADER_TIMEOUT, tls.accept(sock)).await {
                            Ok(Ok(s)) => serve_conn(s, server, permit, peer).await,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "streaming: TLS handshake");
                            }
                            Err(_) => tracing::debug!(%peer, "streaming: TLS handshake timed out"),
                        }
                    }
                }
            });
        }
    })
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Every value of `name`, comma lists split.
fn header_list(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

enum Transport {
    WebSocket,
    Spdy,
}

fn transport(h: &HeaderMap) -> Option<Transport> {
    let upgrade = header_list(h, UPGRADE.as_str());
    if upgrade.iter().any(|u| u.eq_ignore_ascii_case("websocket")) {
        Some(Transport::WebSocket)
    } else if upgrade.iter().any(|u| u.eq_ignore_ascii_case("SPDY/3.1")) {
        Some(Transport::Spdy)
    } else {
        None
    }
}

impl<B: Backend> Server<B> {
    fn handle(self: Arc<Self>, mut req: Request<Incoming>, permit: Slot) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let (Some(kind), Some(token)) = (parts.next(), parts.next()) else {
            return text(StatusCode::NOT_FOUND, "not found\n");
        };
        if !matches!(kind, "exec" | "attach" | "portforward") || token.contains('/') {
            return text(StatusCode::NOT_FOUND, "not found\n");
        }
        if req.method() != Method::GET && req.method() != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        let Some(transport) = transport(req.headers()) else {
            return text(
                StatusCode::BAD_REQUEST,
                "streaming needs a connection upgrade to SPDY/3.1 or to a WebSocket\n",
            );
        };
        // The token is spent by any attempt to use it.
        let request = match self.streaming.tokens.redeem(token) {
            Some(r) if r.kind() == kind => r,
            _ => {
                return text(
                    StatusCode::NOT_FOUND,
                    "unknown or expired streaming URL (each is valid once, for a short time)\n",
                );
            }
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        match transport {
            Transport::WebSocket => self.websocket(req.headers(), request, on_upgrade, permit),
            Transport::Spdy => self.spdy(req.headers(), request, on_upgrade, permit),
        }
    }

    fn websocket(
        self: Arc<Self>,
        h: &HeaderMap,
        request: StreamRequest,
        on_upgrade: hyper::upgrade::OnUpgrade,
        slot: Slot,
    ) -> Response<Full<Bytes>> {
        let key = h.get("sec-websocket-key").map(|k| k.as_bytes().to_vec());
        let version_ok = h
            .get("sec-websocket-version")
            .is_some_and(|v| v.as_bytes() == b"13");
        let Some(key) = key.filter(|_| version_ok) else {
            return text(
                StatusCode::BAD_REQUEST,
                "a WebSocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13\n",
            );
        };
        let offered = header_list(h, "sec-websocket-protocol").join(",");
        let is_pf = matches!(request, StreamRequest::PortForward { .. });
        let tunnel = is_pf
            && header_list(h, "sec-websocket-protocol")
                .iter()
                .any(|p| p == ws::SPDY_TUNNEL);
        let chosen = if is_pf {
            ws::negotiate(&offered, ws::PORT_FORWARD)
        } else {
            ws::negotiate(&offered, ws::REMOTE_COMMAND)
        };
        // The tunnel is chosen only when no channel protocol came first.
        let (name, proto) = match (chosen, tunnel) {
            (Some(p), _) => (p.name, Some(p)),
            (None, true) => (ws::SPDY_TUNNEL, None),
            (None, false) => {
                let served: Vec<&str> = if is_pf {
                    ws::PORT_FORWARD
                        .iter()
                        .map(|p| p.name)
                        .chain([ws::SPDY_TUNNEL])
                        .collect()
                } else {
                    ws::REMOTE_COMMAND.iter().map(|p| p.name).collect()
                };
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unable to negotiate a WebSocket subprotocol: client offers [{offered}], server serves [{}]\n",
                        served.join(", ")
                    ),
                );
            }
        };
        let server = self.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "streaming: WebSocket upgrade failed");
                    return;
                }
            };
            let cfg = WebSocketConfig::default()
                .max_message_size(Some(MAX_WS_MESSAGE))
                .max_frame_size(Some(MAX_WS_MESSAGE));
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(cfg))
                    .await;
            match proto {
                Some(p) => server.ws_session(ws, p, request).await,
                None => {
                    let io = ws::tunnel(ws);
                    server.spdy_session(io, PORT_FORWARD_SPDY, request).await;
                }
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let hs = r.headers_mut();
        hs.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        hs.insert(UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&derive_accept_key(&key)) {
            hs.insert("sec-websocket-accept", v);
        }
        hs.insert("sec-websocket-protocol", HeaderValue::from_static(name));
        r
    }

    fn spdy(
        self: Arc<Self>,
        h: &HeaderMap,
        request: StreamRequest,
        on_upgrade: hyper::upgrade::OnUpgrade,
        slot: Slot,
    ) -> Response<Full<Bytes>> {
        let offered = header_list(h, STREAM_PROTOCOL);
        let served: &[&'static str] = match request {
            StreamRequest::PortForward { .. } => &[PORT_FORWARD_SPDY],
            _ => remotecommand::SPDY_PROTOCOLS,
        };
        // A client that offers nothing gets the first protocol version
        // (kubelet's fallback).
        let chosen: Option<&'static str> = if offered.is_empty() {
            served.last().copied()
        } else {
            offered
                .iter()
                .find_map(|o| served.iter().find(|s| **s == o.as_str()).copied())
        };
        let Some(chosen) = chosen else {
            let mut r = text(
                StatusCode::FORBIDDEN,
                format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {served:?}\n"
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&served.join(", ")) {
                r.headers_mut().insert(ACCEPTED_PROTOCOLS, v);
            }
            return r;
        };
        let server = self.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match on_upgrade.await {
                Ok(u) => server.spdy_session(TokioIo::new(u), chosen, request).await,
                Err(e) => tracing::debug!(error = %e, "streaming: SPDY upgrade failed"),
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let hs = r.headers_mut();
        hs.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        hs.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        hs.insert(STREAM_PROTOCOL, HeaderValue::from_static(chosen));
        r
    }

    async fn ws_session<S>(
        &self,
        ws: WebSocketStream<S>,
        proto: ws::Negotiated,
        request: StreamRequest,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        match request {
            StreamRequest::PortForward { pod_id, ports } => {
                let mut first = Vec::new();
                for (i, port) in ports.iter().enumerate() {
                    let le = bytes::Bytes::copy_from_slice(&port.to_le_bytes());
                    let data = (2 * i) as u8;
                    first.push((data, le.clone()));
                    first.push((data + 1, le));
                }
                let inbound: Vec<u8> = (0..ports.len()).map(|i| (2 * i) as u8).collect();
                let mut ch = ws::open(ws, proto, &inbound, first);
                let activity = crate::remotecommand::Activity::default();
                activity.touch();
                let mut forwards = Vec::new();
                for (i, port) in ports.into_iter().enumerate() {
                    let data = (2 * i) as u8;
                    let Some(rd) = ch.take_reader(data) else {
                        continue;
                    };
                    let (wr, err) = (ch.writer(data), ch.writer(data + 1));
                    let backend = self.backend.clone();
                    let pod_id = pod_id.clone();
                    let activity = activity.clone();
                    forwards.push(async move {
                        crate::portforward::forward(
                            &*backend, &pod_id, port, rd, wr, err, &activity,
                        )
                        .await;
                    });
                }
                let gone = ch.gone();
                drop(ch);
                tokio::select! {
                    _ = futures_util::future::join_all(forwards) => {}
                    () = gone => {}
                    () = activity.idle(self.idle) => {
                        tracing::debug!(%pod_id, "streaming: idle port-forward session closed");
                    }
                }
            }
            exec_or_attach => {
                let (tty, stdin, stdout, stderr) = flags(&exec_or_attach);
                let mut inbound = Vec::new();
                if stdin {
                    inbound.push(0);
                }
                if tty {
                    inbound.push(4);
                }
                let mut ch = ws::open(ws, proto, &inbound, Vec::new());
                let wiring = Wiring {
                    stdin: ch.take_reader(0).map(|r| Box::new(r) as _),
                    stdout: stdout.then(|| Box::new(ch.writer(1)) as _),
                    stderr: (stderr && !tty).then(|| Box::new(ch.writer(2)) as _),
                    resize: ch.take_reader(4).map(|r| Box::new(r) as _),
                    error: Box::new(ch.writer(3)),
                    status: if proto.version >= 4 {
                        StatusFormat::Json
                    } else {
                        StatusFormat::Text
                    },
                    gone: ch.gone(),
                };
                drop(ch);
                self.run_command(exec_or_attach, wiring).await;
            }
        }
    }

    /// Starts what `request` asks for and serves it on `wiring`.
    pub(crate) async fn run_command(&self, request: StreamRequest, mut wiring: Wiring) {
        let (started, cmd) = match &request {
            StreamRequest::Exec {
                container_id,
                cmd,
                tty,
                stdin,
                ..
            } => (
                self.backend.exec(container_id, cmd, *tty, *stdin).await,
                cmd.clone(),
            ),
            StreamRequest::Attach {
                container_id,
                stdin,
                stdout,
                stderr,
                ..
            } => (
                self.backend
                    .attach(container_id, *stdin, *stdout, *stderr)
                    .await,
                Vec::new(),
            ),
            StreamRequest::PortForward { .. } => return,
        };
        match started {
            Ok(process) => {
                let end = remotecommand::serve(process, wiring, &cmd, self.idle).await;
                tracing::debug!(kind = request.kind(), ?end, "streaming: session ended");
            }
            Err(e) => {
                use tokio::io::AsyncWriteExt;
                let outcome = crate::status::Outcome::Internal(e.to_string());
                let report = match wiring.status {
                    StatusFormat::Json => outcome.status_json(),
                    StatusFormat::Text => outcome.text().into_bytes(),
                };
                let _ = wiring.error.write_all(&report).await;
                let _ = wiring.error.shutdown().await;
            }
        }
    }
}

/// (tty, stdin, stdout, stderr) of an exec or attach.
pub(crate) fn flags(r: &StreamRequest) -> (bool, bool, bool, bool) {
    match r {
        StreamRequest::Exec {
            tty,
            stdin,
            stdout,
            stderr,
            ..
        }
        | StreamRequest::Attach {
            tty,
            stdin,
            stdout,
            stderr,
            ..
        } => (*tty, *stdin, *stdout, *stderr),
        StreamRequest::PortForward { .. } => (false, false, false, false),
    }
}
