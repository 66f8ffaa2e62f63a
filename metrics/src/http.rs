//! The metrics endpoint: `GET /metrics` (Prometheus text 0.0.4, or
//! OpenMetrics 1.0 when the scraper's Accept asks for it), `/healthz`
//! and `/readyz`; HEAD for each; 405 for other methods, 404 for other
//! paths. It runs on its own tasks and holds no lock the CRI calls take
//! while it writes, so a slow scraper cannot hold them up; connections
//! are limited in number and in how long their headers may take.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Scrapers served at once; more connections are closed at accept.
const MAX_CONNECTIONS: usize = 32;
/// A client must send its request headers within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The OpenMetrics text content type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the endpoint serves.
#[derive(Debug)]
pub struct Endpoint {
    pub registry: Registry,
    /// `/readyz` answers 200 once set.
    pub ready: AtomicBool,
    /// The last exposition's size: the next one's buffer is allocated
    /// once at about that size rather than grown by doubling (a node's
    /// exposition is hundreds of KiB; the doubling left a trail of freed
    /// buffers in the allocator's arenas, scrape after scrape).
    size_hint: AtomicUsize,
}

impl Endpoint {
    pub fn new(registry: Registry) -> Endpoint {
        Endpoint {
            registry,
            ready: AtomicBool::new(false),
            size_hint: AtomicUsize::new(16 * 1024),
        }
    }

    /// The exposition of the registry, and its content type: OpenMetrics
    /// when `accept` names it, else Prometheus text.
    pub fn exposition(&self, accept: &str) -> Result<(String, &'static str), String> {
        let hint = self.size_hint.load(Ordering::Relaxed);
        let mut body = String::with_capacity(hint + hint / 8);
        let openmetrics = accept.contains("application/openmetrics-text");
        let res = if openmetrics {
            prometheus_client::encoding::text::encode(&mut body, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut body, &self.registry)
        };
        res.map_err(|e| format!("encoding metrics: {e}"))?;
        self.size_hint.store(body.len(), Ordering::Relaxed);
        Ok((
            body,
            if openmetrics {
                OPENMETRICS
            } else {
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE
            },
        ))
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn handle(endpoint: Arc<Endpoint>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let head = req.method() == Method::HEAD;
    let known = matches!(req.uri().path(), "/metrics" | "/healthz" | "/readyz");
    if !known {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET && !head {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut resp = match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if endpoint.ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => {
            let accept = req
                .headers()
                .get(ACCEPT)
                .and_then(|a| a.to_str().ok())
                .unwrap_or("")
                .to_owned();
            // Encoding reads the collectors' samples and the store's
            // cache: short, but not for a runtime worker to wait on.
            let ep = endpoint.clone();
            match tokio::task::spawn_blocking(move || ep.exposition(&accept)).await {
                Ok(Ok((body, ctype))) => {
                    let mut r = Response::new(Full::new(Bytes::from(body)));
                    r.headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
                    r
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "metrics scrape failed");
                    text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics scrape task failed");
                    text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n")
                }
            }
        }
    };
    if head {
        let headers = resp.headers().clone();
        let status = resp.status();
        resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
    }
    resp
}

/// Serves `endpoint` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, endpoint: Arc<Endpoint>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and the like: wait rather than spin.
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let ep = endpoint.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let ep = ep.clone();
                async move { Ok::<_, Infallible>(handle(ep, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics connection ended");
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn endpoint() -> Arc<Endpoint> {
        let mut registry = Registry::with_prefix("berth");
        let c: prometheus_client::metrics::counter::Counter = Default::default();
        c.inc();
        registry.register("things", "Things", c);
        Arc::new(Endpoint::new(registry))
    }

    /// One raw HTTP/1.1 request; the whole response.
    fn call(addr: std::net::SocketAddr, req: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    fn get(path: &str, extra: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn paths_methods_and_formats() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let ep = endpoint();
        let server = tokio::spawn(serve(l, ep.clone()));
        let r = tokio::task::spawn_blocking(move || {
            let prom = call(addr, &get("/metrics", ""));
            let om = call(
                addr,
                &get(
                    "/metrics",
                    "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n",
                ),
            );
            let head = call(
                addr,
                "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            let post = call(
                addr,
                "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            let missing = call(addr, &get("/nothing", ""));
            let health = call(addr, &get("/healthz", ""));
            let not_ready = call(addr, &get("/readyz", ""));
            (prom, om, head, post, missing, health, not_ready)
        })
        .await
        .unwrap();
        let (prom, om, head, post, missing, health, not_ready) = r;
        assert!(prom.starts_with("HTTP/1.1 200"), "{prom}");
        assert!(prom.contains("text/plain; version=0.0.4"));
        assert!(prom.contains("berth_things_total 1"));
        assert!(!prom.contains("# EOF"), "Prometheus text has no EOF marker");
        assert!(om.contains("application/openmetrics-text"), "{om}");
        assert!(om.trim_end().ends_with("# EOF"), "{om}");
        assert!(head.starts_with("HTTP/1.1 200") && !head.contains("berth_things"));
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        assert!(post.to_lowercase().contains("allow: get, head"));
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        assert!(health.starts_with("HTTP/1.1 200"));
        assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
        ep.ready.store(true, Ordering::Release);
        let ready = tokio::task::spawn_blocking(move || call(addr, &get("/readyz", "")))
            .await
            .unwrap();
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_client_does_not_hold_up_others() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(serve(l, endpoint()));
        let out = tokio::task::spawn_blocking(move || {
            // Connected, sending nothing: the next scrape is served.
            let _idle = std::net::TcpStream::connect(addr).unwrap();
            call(addr, &get("/metrics", ""))
        })
        .await
        .unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        server.abort();
    }
}
