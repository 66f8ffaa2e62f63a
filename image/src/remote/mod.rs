//! Talking to one registry endpoint over the distribution API (HTTP on
//! reqwest and rustls), with its errors classified into [`ImageError`]s.
//!
//! berth's own small client rather than oci-client: oci-client 0.18 has no
//! client certificates, no headers per host and no API root other than
//! `<host>/v2`, which hosts.toml needs. What it does is what a pull needs:
//! `HEAD` a tag's manifest to resolve it, `GET` manifests (with berth's
//! Accept list) and blobs (streamed, redirects followed), token and Basic
//! authentication (`auth.rs`), one HTTP client per transport
//! (`transport.rs`).

mod auth;
mod transport;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::{ACCEPT as ACCEPT_HEADER, AUTHORIZATION, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

pub use transport::Clients;

use crate::creds::Credentials;
use crate::digest::Digest;
use crate::error::ImageError;
use crate::hosts::{Endpoint, HostsError};
use crate::manifest::{ACCEPT, Descriptor};
use crate::reference::ImageRef;

/// Largest manifest accepted (containerd's limit).
const MAX_MANIFEST: usize = 4 << 20;
/// How much of an error response is read.
const MAX_ERROR_BODY: usize = 64 << 10;

/// rustls needs a process-wide crypto provider; berth uses ring.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// One endpoint (registry or mirror) serving one repository.
pub struct Remote {
    http: reqwest::Client,
    tokens: std::sync::Arc<auth::Tokens>,
    creds: Option<Credentials>,
    pub endpoint: Endpoint,
    /// The upstream registry name, for messages and `?ns=`.
    registry: String,
    image: ImageRef,
    /// Headers of hosts.toml, checked when the file was read.
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("endpoint", &self.endpoint.base_url())
            .field("image", &self.image.to_string())
            .finish()
    }
}

/// An OCI error response body.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    errors: Vec<OciError>,
}

#[derive(Deserialize)]
struct OciError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl Remote {
    pub fn new(
        clients: &Clients,
        endpoint: Endpoint,
        image: &ImageRef,
        creds: Option<&Credentials>,
    ) -> Result<Remote, ImageError> {
        let http = clients.get(&endpoint.transport).map_err(|message| {
            ImageError::Config(HostsError {
                path: endpoint
                    .config
                    .as_ref()
                    .map_or_else(|| endpoint.base_url(), |p| p.display().to_string()),
                message: format!("{}: {message}", endpoint.base_url()),
            })
        })?;
        let headers = endpoint
            .headers
            .iter()
            .filter_map(|(n, v)| {
                Some((
                    HeaderName::from_bytes(n.as_bytes()).ok()?,
                    HeaderValue::from_str(v).ok()?,
                ))
            })
            .collect();
        Ok(Remote {
            http,
            tokens: clients.tokens.clone(),
            creds: creds.cloned(),
            registry: image.registry.clone(),
            endpoint,
            image: image.clone(),
            headers,
        })
    }

    /// Whether the host is the registry's own (Docker Hub's API host is).
    fn own_host(&self) -> bool {
        self.endpoint.host == self.registry
            || (self.registry == "docker.io" && self.endpoint.host == "registry-1.docker.io")
    }

    /// The registry, and the host when another serves it, for messages.
    fn who(&self) -> String {
        if self.own_host() {
            self.registry.clone()
        } else {
            format!("{} (via {})", self.registry, self.endpoint.base_url())
        }
    }

    /// `<API root>/<repository>/<tail>`, with `?ns=<registry>` when the
    /// host is not the registry's own (containerd's rule).
    fn url(&self, tail: &str) -> String {
        let mut url = format!(
            "{}/{}/{tail}",
            self.endpoint.base_url(),
            self.image.repository
        );
        if !self.own_host() {
            url.push_str("?ns=");
            url.push_str(&self.registry);
        }
        url
    }

    fn token_key(&self) -> auth::TokenKey {
        auth::TokenKey {
            base: self.endpoint.base_url(),
            creds: self.creds.as_ref().map(Credentials::fingerprint),
            scope: self.scope(),
        }
    }

    fn scope(&self) -> String {
        format!("repository:{}:pull", self.image.repository)
    }

    fn unavailable(&self, message: String) -> ImageError {
        ImageError::Unavailable {
            registry: self.who(),
            message,
        }
    }

    /// Sends `method <tail>`, authenticating when the host asks (once);
    /// a response that is not a success is classified into an error.
    async fn send(
        &self,
        method: Method,
        tail: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<reqwest::Response, ImageError> {
        let resp = self.request(method, tail, accept, what).await?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(self.status_error(what, resp).await)
        }
    }

    /// [`send`](Self::send), returning a response that is not a success
    /// as it is, except a refused authentication.
    async fn request(
        &self,
        method: Method,
        tail: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<reqwest::Response, ImageError> {
        let url = self.url(tail);
        let key = self.token_key();
        let mut authorization = self.tokens.get(&key).or_else(|| match &self.creds {
            Some(Credentials::Bearer(t)) => Some(auth::bearer(t)),
            _ => None,
        });
        for attempt in 0..2 {
            let mut req = self.http.request(method.clone(), &url);
            for (n, v) in &self.headers {
                req = req.header(n, v);
            }
            if let Some(a) = accept {
                req = req.header(ACCEPT_HEADER, a);
            }
            if let Some(a) = &authorization {
                req = req.header(AUTHORIZATION, a.clone());
            }
            let resp = req
                .send()
                .await
                .map_err(|e| self.unavailable(format!("{what}: {}", error_chain(&e))))?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            if attempt == 1 {
                self.tokens.remove(&key);
                return Ok(resp);
            }
            let challenges = auth::challenges(resp.headers());
            let Some(challenge) = challenges
                .iter()
                .find(|c| matches!(c, auth::Challenge::Bearer { .. }))
                .or_else(|| challenges.first())
            else {
                // 401 without a challenge: nothing to answer it with.
                return Ok(resp);
            };
            let (header, lifetime) =
                auth::authorize(&self.http, challenge, self.creds.as_ref(), &self.scope())
                    .await
                    .map_err(|e| match e {
                        auth::AuthError::Refused(message) => ImageError::Unauthenticated {
                            registry: self.who(),
                            message: format!("{what}: {message}"),
                        },
                        auth::AuthError::Unreachable(message) => {
                            self.unavailable(format!("{what}: {message}"))
                        }
                    })?;
            self.tokens.put(key.clone(), header.clone(), lifetime);
            authorization = Some(header);
        }
        Err(self.unavailable(format!("{what}: authentication did not settle")))
    }

    /// The error for a response that is not a success.
    async fn status_error(&self, what: &str, resp: reqwest::Response) -> ImageError {
        let status = resp.status();
        let body = read_limited(resp, MAX_ERROR_BODY).await.unwrap_or_default();
        let envelope: Option<Envelope> = serde_json::from_slice(&body).ok();
        let first = envelope.as_ref().and_then(|e| e.errors.first());
        let detail = match first {
            Some(e) => format!(": {} {}", e.code, e.message.trim()),
            None => {
                let text = String::from_utf8_lossy(&body);
                let text: String = text.trim().chars().take(200).collect();
                if text.is_empty() {
                    String::new()
                } else {
                    format!(": {text}")
                }
            }
        };
        let message = format!("{what}: HTTP {}{detail}", status.as_u16());
        let registry = self.who();
        let code = first.map(|e| e.code.as_str()).unwrap_or_default();
        match (status.as_u16(), code) {
            (_, "UNAUTHORIZED") | (401, _) => ImageError::Unauthenticated { registry, message },
            (_, "DENIED") | (403, _) => ImageError::PermissionDenied { registry, message },
            (_, "MANIFEST_UNKNOWN" | "NAME_UNKNOWN" | "BLOB_UNKNOWN" | "NOT_FOUND") | (404, _) => {
                ImageError::NotFound(format!("{registry}: {message}"))
            }
            _ => ImageError::Unavailable { registry, message },
        }
    }

    /// The digest a tag names (HEAD; GET when the host does not say, or
    /// fails: a HEAD's error has no body to tell why).
    pub async fn resolve(&self) -> Result<Digest, ImageError> {
        let tag = self.image.tag.as_deref().unwrap_or("latest");
        let what = format!("manifest {tag}");
        let accept = ACCEPT.join(", ");
        let resp = self
            .request(
                Method::HEAD,
                &format!("manifests/{tag}"),
                Some(&accept),
                &what,
            )
            .await?;
        if !resp.status().is_success() {
            return self.manifest(None).await.map(|(_, d)| d);
        }
        let said = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        match said {
            Some(d) => Ok(d),
            None => self.manifest(None).await.map(|(_, d)| d),
        }
    }

    /// Fetches the manifest (or index) by `digest`, or the reference's tag.
    pub async fn manifest(&self, digest: Option<&Digest>) -> Result<(Bytes, Digest), ImageError> {
        let reference = match (digest, &self.image.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        };
        let what = format!("manifest {reference}");
        let resp = self
            .send(
                Method::GET,
                &format!("manifests/{reference}"),
                Some(&ACCEPT.join(", ")),
                &what,
            )
            .await?;
        let said = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_limited(resp, MAX_MANIFEST)
            .await
            .map_err(|e| self.unavailable(format!("{what}: {e}")))?;
        let actual = Digest::of(&body);
        // The registry's Docker-Content-Digest must agree with the bytes.
        if said.as_deref().is_some_and(|d| d != actual.to_string())
            || digest.is_some_and(|want| *want != actual)
        {
            return Err(ImageError::DigestMismatch {
                what: "manifest",
                digest: digest.copied().unwrap_or(actual),
                detail: format!(
                    "registry said {}, content is {actual}",
                    said.as_deref().unwrap_or("nothing")
                ),
            });
        }
        Ok((body, actual))
    }

    /// A small blob (config) held in memory, digest-checked.
    pub async fn blob(&self, desc: &Descriptor) -> Result<Bytes, ImageError> {
        let what = format!("blob {}", desc.digest);
        let resp = self
            .send(Method::GET, &format!("blobs/{}", desc.digest), None, &what)
            .await?;
        let limit = usize::try_from(desc.size).unwrap_or(usize::MAX);
        let body = read_limited(resp, limit).await.map_err(|e| match e {
            ReadError::TooLong => ImageError::DigestMismatch {
                what: "blob",
                digest: desc.digest,
                detail: format!("more than the {} bytes its descriptor says", desc.size),
            },
            ReadError::Network(m) => self.unavailable(format!("{what}: {m}")),
        })?;
        let actual = Digest::of(&body);
        if actual != desc.digest {
            return Err(ImageError::DigestMismatch {
                what: "blob",
                digest: desc.digest,
                detail: format!("got {actual}"),
            });
        }
        Ok(body)
    }

    /// A blob as a stream of chunks. The caller verifies digest and size.
    pub async fn blob_stream(
        &self,
        desc: &Descriptor,
    ) -> Result<impl Stream<Item = Result<Bytes, std::io::Error>> + use<>, ImageError> {
        let what = format!("blob {}", desc.digest);
        let resp = self
            .send(Method::GET, &format!("blobs/{}", desc.digest), None, &what)
            .await?;
        Ok(resp
            .bytes_stream()
            .map(|r| r.map_err(|e| std::io::Error::other(error_chain(&e)))))
    }
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub(crate) enum ReadError {
    TooLong,
    Network(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLong => f.write_str("the response is too large"),
            ReadError::Network(m) => f.write_str(m),
        }
    }
}

/// A response's body, at most `limit` bytes.
pub(crate) async fn read_limited(
    resp: reqwest::Response,
    limit: usize,
) -> Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLong);
    }
    let mut out = Vec::new();
    let mut stream = std::pin::pin!(resp.bytes_stream());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ReadError::Network(error_chain(&e)))?;
        if out.len() + chunk.len() > limit {
            return Err(ReadError::TooLong);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

/// An error with its causes, where the useful words usually are.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let next = s.to_string();
        if !msg.contains(&next) {
            msg = format!("{msg}: {next}");
        }
        cur = s.source();
    }
    msg
}

#[cfg(test)]
mod tests;
