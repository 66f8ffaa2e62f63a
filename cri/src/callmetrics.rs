//! Counts and times every gRPC call berthd answers, by method and gRPC
//! status code, into `berth_cri_requests_total` and
//! `berth_cri_request_duration_seconds`.
//!
//! tonic answers an error "trailers-only": its code is in the response
//! headers. A success carries its code in the trailers, after the body;
//! a response without `grpc-status` in its headers is therefore a success.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use berth_metrics::health::Health;
use tonic::codegen::http;
use tower::{Layer, Service};

/// The tower layer.
#[derive(Debug, Clone)]
pub struct CallMetrics {
    health: Arc<Health>,
}

impl CallMetrics {
    pub fn new(health: Arc<Health>) -> Self {
        CallMetrics { health }
    }
}

impl<S> Layer<S> for CallMetrics {
    type Service = Measured<S>;

    fn layer(&self, inner: S) -> Measured<S> {
        Measured {
            inner,
            health: self.health.clone(),
        }
    }
}

/// A service whose calls are measured.
#[derive(Debug, Clone)]
pub struct Measured<S> {
    inner: S,
    health: Arc<Health>,
}

/// The method a gRPC path names (`/runtime.v1.RuntimeService/Version` →
/// `Version`). Anything else is `unknown`, so a client cannot mint label
/// values.
pub fn method_of(path: &str) -> &str {
    let known = [
        "/runtime.v1.RuntimeService/",
        "/runtime.v1.ImageService/",
        "/berth.v1.Images/",
    ];
    let Some(name) = path.rsplit('/').next() else {
        return "unknown";
    };
    let plausible =
        !name.is_empty() && name.len() <= 48 && name.bytes().all(|b| b.is_ascii_alphanumeric());
    if plausible && known.iter().any(|k| path.starts_with(k)) {
        name
    } else {
        "unknown"
    }
}

/// The name of a gRPC status code as Prometheus labels it (`OK`,
/// `NotFound`, ...).
pub fn code_name(code: Option<&[u8]>) -> String {
    let Some(code) = code else {
        return "OK".into();
    };
    let n = std::str::from_utf8(code)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    match n {
        Some(0) => "OK".into(),
        Some(n) => format!("{:?}", tonic::Code::from_i32(n)),
        None => "Unknown".into(),
    }
}

impl<S, B, RB> Service<http::Request<B>> for Measured<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = method_of(request.uri().path()).to_owned();
        let health = self.health.clone();
        let started = Instant::now();
        let fut = self.inner.call(request);
        Box::pin(async move {
            let out = fut.await;
            let code = match &out {
                Ok(r) => code_name(r.headers().get("grpc-status").map(|v| v.as_bytes())),
                Err(_) => "Unavailable".into(),
            };
            health.cri_call(&method, &code, started.elapsed().as_secs_f64());
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_codes_are_named() {
        assert_eq!(
            method_of("/runtime.v1.RuntimeService/RunPodSandbox"),
            "RunPodSandbox"
        );
        assert_eq!(method_of("/runtime.v1.ImageService/PullImage"), "PullImage");
        assert_eq!(method_of("/berth.v1.Images/Pull"), "Pull");
        assert_eq!(method_of("/evil.Service/x"), "unknown");
        assert_eq!(method_of("/berth.evil/Minted"), "unknown");
        assert_eq!(method_of("/runtime.v1.RuntimeService/a-b"), "unknown");
        assert_eq!(
            method_of(&format!("/berth.v1.Images/{}", "A".repeat(60))),
            "unknown"
        );
        assert_eq!(code_name(None), "OK");
        assert_eq!(code_name(Some(b"0")), "OK");
        assert_eq!(code_name(Some(b"5")), "NotFound");
        assert_eq!(code_name(Some(b"12")), "Unimplemented");
        assert_eq!(code_name(Some(b"x")), "Unknown");
    }
}
