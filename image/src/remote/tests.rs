//! The client against an in-process registry on 127.0.0.1 (hyper): the
//! token flows, Basic, redirects, headers, API roots, `?ns=`, and how
//! each failure is classified.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use super::*;
use crate::hosts::Transport;

/// A request as the fake registry saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query.
    uri: String,
    headers: reqwest::header::HeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Reply = hyper::Response<Full<Bytes>>;

struct Fake {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    async fn start(handler: impl Fn(&Seen, SocketAddr) -> Reply + Send + Sync + 'static) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (handler, log) = (handler.clone(), log.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<Incoming>| {
                        let (handler, log) = (handler.clone(), log.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let seen = Seen {
                                method: parts.method.to_string(),
                                uri: parts.uri.to_string(),
                                headers: parts.headers,
                                body,
                            };
                            let reply = handler(&seen, addr);
                            log.lock().unwrap().push(seen);
                            Ok::<_, std::convert::Infallible>(reply)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Fake { addr, seen, task }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, path_prefix: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.uri.starts_with(path_prefix))
            .count()
    }
}

fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
    let mut r = hyper::Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Full::new(body.into())).unwrap()
}

const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;

fn manifest_reply(head: bool) -> Reply {
    let d = Digest::of(MANIFEST).to_string();
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from_static(MANIFEST)
    };
    reply(
        200,
        &[
            ("docker-content-digest", &d),
            ("content-type", "application/vnd.oci.image.manifest.v1+json"),
        ],
        body,
    )
}

fn endpoint(host: &str, path: &str) -> Endpoint {
    Endpoint {
        host: host.to_owned(),
        path: path.to_owned(),
        plain_http: true,
        pull: true,
        resolve: true,
        mirror: false,
        headers: Vec::new(),
        transport: Transport::default(),
        config: None,
    }
}

fn remote(clients: &Clients, ep: Endpoint, image: &str, creds: Option<Credentials>) -> Remote {
    install_crypto_provider();
    let r = ImageRef::parse(image).unwrap();
    Remote::new(clients, ep, &r, creds.as_ref()).unwrap()
}

fn basic_creds(u: &str, p: &str) -> Option<Credentials> {
    Some(Credentials::Basic {
        username: u.into(),
        password: p.into(),
    })
}

/// A registry behind token auth: `/token` trades `u:p` (basic) or the
/// refresh token `idt` (POST) for `tok`; every /v2 request wants it.
async fn token_registry() -> Fake {
    Fake::start(|s, addr| {
        if s.uri.starts_with("/token") {
            let scope_ok = s.uri.contains("scope=repository%3Arepo%3Apull")
                || String::from_utf8_lossy(&s.body).contains("scope=repository%3Arepo%3Apull");
            let basic_ok =
                s.header("authorization") == Some(auth::basic("u", "p").to_str().unwrap());
            let refresh_ok = s.method == "POST"
                && String::from_utf8_lossy(&s.body).contains("grant_type=refresh_token")
                && String::from_utf8_lossy(&s.body).contains("refresh_token=idt");
            return match (scope_ok, basic_ok, refresh_ok) {
                (true, true, _) => reply(200, &[], r#"{"token":"tok","expires_in":300}"#),
                (true, _, true) => reply(200, &[], r#"{"access_token":"tok"}"#),
                _ => reply(401, &[], "no"),
            };
        }
        if s.header("authorization") != Some("Bearer tok") {
            let challenge = format!(
                r#"Bearer realm="http://{addr}/token",service="fake",scope="repository:repo:pull""#
            );
            return reply(
                401,
                &[("www-authenticate", &challenge)],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            );
        }
        manifest_reply(s.method == "HEAD")
    })
    .await
}

#[tokio::test]
async fn bearer_tokens_with_basic_credentials_are_fetched_once() {
    let reg = token_registry().await;
    let clients = Clients::default();
    let image = format!("{}/repo:v1", reg.host());
    let r = remote(
        &clients,
        endpoint(&reg.host(), "/v2"),
        &image,
        basic_creds("u", "p"),
    );
    let d = r.resolve().await.unwrap();
    assert_eq!(d, Digest::of(MANIFEST));
    let (body, _) = r.manifest(Some(&d)).await.unwrap();
    assert_eq!(body, MANIFEST);
    // The token was asked for once, then sent straight away.
    assert_eq!(reg.count("/token"), 1);
    let v2: Vec<_> = reg
        .seen()
        .into_iter()
        .filter(|s| s.uri.starts_with("/v2"))
        .collect();
    assert_eq!(v2.len(), 3, "HEAD 401, HEAD, GET: {v2:?}");
    assert_eq!(v2[0].method, "HEAD");
    assert_eq!(v2[2].uri, format!("/v2/repo/manifests/{d}"));
    assert!(
        v2[2]
            .header("accept")
            .unwrap()
            .contains("application/vnd.oci.image.index.v1+json")
    );
    assert!(v2[2].header("user-agent").unwrap().starts_with("berth/"));
    // Another remote with the same credentials reuses it; wrong ones do not.
    let again = remote(
        &clients,
        endpoint(&reg.host(), "/v2"),
        &image,
        basic_creds("u", "p"),
    );
    again.manifest(Some(&d)).await.unwrap();
    assert_eq!(reg.count("/token"), 1);
    let wrong = remote(
        &clients,
        endpoint(&reg.host(), "/v2"),
        &image,
        basic_creds("u", "bad"),
    );
    let e = wrong.manifest(Some(&d)).await.unwrap_err();
    assert!(matches!(e, ImageError::Unauthenticated { .. }), "{e}");
    assert!(e.to_string().contains("refused the credentials"), "{e}");
    assert!(!e.to_string().contains("bad"), "{e}");
    let anonymous = remote(&clients, endpoint(&reg.host(), "/v2"), &image, None);
    let e = anonymous.manifest(Some(&d)).await.unwrap_err();
    assert!(matches!(e, ImageError::Unauthenticated { .. }), "{e}");
}

#[tokio::test]
async fn identity_tokens_are_traded_with_a_refresh_grant() {
    let reg = token_registry().await;
    let image = format!("{}/repo:v1", reg.host());
    let r = remote(
        &Clients::default(),
        endpoint(&reg.host(), "/v2"),
        &image,
        Some(Credentials::IdentityToken("idt".into())),
    );
    r.manifest(None).await.unwrap();
    let token = reg
        .seen()
        .into_iter()
        .find(|s| s.uri.starts_with("/token"))
        .unwrap();
    assert_eq!(token.method, "POST");
    let form = String::from_utf8_lossy(&token.body).into_owned();
    assert!(
        form.contains("client_id=berth") && form.contains("service=fake"),
        "{form}"
    );
}

#[tokio::test]
async fn registry_tokens_are_sent_as_they_are() {
    let reg = token_registry().await;
    let image = format!("{}/repo:v1", reg.host());
    let r = remote(
        &Clients::default(),
        endpoint(&reg.host(), "/v2"),
        &image,
        Some(Credentials::Bearer("tok".into())),
    );
    r.manifest(None).await.unwrap();
    assert_eq!(reg.count("/token"), 0);
    assert_eq!(reg.count("/v2"), 1);
    let bad = remote(
        &Clients::default(),
        endpoint(&reg.host(), "/v2"),
        &image,
        Some(Credentials::Bearer("stale".into())),
    );
    let e = bad.manifest(None).await.unwrap_err();
    assert!(matches!(e, ImageError::Unauthenticated { .. }), "{e}");
}

#[tokio::test]
async fn basic_auth_is_answered_and_then_sent_first() {
    let reg = Fake::start(|s, _| {
        if s.header("authorization") == Some(auth::basic("u", "p").to_str().unwrap()) {
            manifest_reply(false)
        } else {
            reply(401, &[("www-authenticate", r#"Basic realm="fake""#)], "")
        }
    })
    .await;
    let image = format!("{}/repo:v1", reg.host());
    let r = remote(
        &Clients::default(),
        endpoint(&reg.host(), "/v2"),
        &image,
        basic_creds("u", "p"),
    );
    r.manifest(None).await.unwrap();
    r.manifest(None).await.unwrap();
    assert_eq!(reg.count("/v2"), 3, "one 401, then credentials at once");
    let anonymous = remote(
        &Clients::default(),
        endpoint(&reg.host(), "/v2"),
        &image,
        None,
    );
    let e = anonymous.manifest(None).await.unwrap_err().to_string();
    assert!(e.contains("no credentials were given"), "{e}");
}

#[tokio::test]
async fn blobs_follow_redirects_without_the_authorization() {
    let blob = Bytes::from_static(b"layer bytes");
    let digest = Digest::of(&blob);
    let storage = {
        let blob = blob.clone();
        Fake::start(move |_, _| reply(200, &[], blob.clone())).await
    };
    let target = format!("http://{}/storage/{digest}?signature=x", storage.host());
    let reg = Fake::start(move |s, _| {
        if s.header("authorization") != Some("Bearer tok") {
            return reply(401, &[], "");
        }
        reply(307, &[("location", &target)], "")
    })
    .await;
    let desc = Descriptor {
        media_type: "application/octet-stream".into(),
        digest,
        size: blob.len() as u64,
        platform: None,
        annotations: BTreeMap::new(),
    };
    let image = format!("{}/repo:v1", reg.host());
    let r = remote(
        &Clients::default(),
        endpoint(&reg.host(), "/v2"),
        &image,
        Some(Credentials::Bearer("tok".into())),
    );
    assert_eq!(r.blob(&desc).await.unwrap(), blob);
    let mut stream = std::pin::pin!(r.blob_stream(&desc).await.unwrap());
    let mut got = Vec::new();
    while let Some(c) = stream.next().await {
        got.extend_from_slice(&c.unwrap());
    }
    assert_eq!(got, blob);
    let at_storage = storage.seen();
    assert_eq!(at_storage.len(), 2);
    assert!(at_storage[0].uri.starts_with("/storage/sha256:"));
    assert!(
        at_storage
            .iter()
            .all(|s| s.header("authorization").is_none())
    );
    // A blob longer than its descriptor, or other bytes, is refused.
    let short = Descriptor {
        size: 3,
        ..desc.clone()
    };
    assert!(matches!(
        r.blob(&short).await,
        Err(ImageError::DigestMismatch { .. })
    ));
    let other = Descriptor {
        digest: Digest::of(b"x"),
        ..desc
    };
    assert!(matches!(
        r.blob(&other).await,
        Err(ImageError::DigestMismatch { .. })
    ));
}

#[tokio::test]
async fn mirrors_get_their_api_root_headers_and_the_namespace() {
    let reg = Fake::start(|s, _| {
        if s.header("x-mirror-token") != Some("t0ken") {
            return reply(401, &[], "missing header");
        }
        manifest_reply(s.method == "HEAD")
    })
    .await;
    let mut ep = endpoint(&reg.host(), "/some/prefix/v2");
    ep.mirror = true;
    ep.headers = vec![("x-mirror-token".into(), "t0ken".into())];
    let r = remote(&Clients::default(), ep.clone(), "quay.io/org/app:v1", None);
    r.resolve().await.unwrap();
    let seen = reg.seen();
    assert_eq!(
        seen[0].uri,
        "/some/prefix/v2/org/app/manifests/v1?ns=quay.io"
    );
    // override_path: the API root as written.
    ep.path = "/custom".into();
    let r = remote(&Clients::default(), ep.clone(), "quay.io/org/app:v1", None);
    r.manifest(None).await.unwrap();
    assert_eq!(reg.seen()[1].uri, "/custom/org/app/manifests/v1?ns=quay.io");
    // Without the header: the mirror's 401 (no challenge) is the error.
    ep.headers.clear();
    let r = remote(&Clients::default(), ep, "quay.io/org/app:v1", None);
    let e = r.manifest(None).await.unwrap_err();
    assert!(matches!(e, ImageError::Unauthenticated { .. }), "{e}");
    assert!(e.to_string().contains("HTTP 401: missing header"), "{e}");
    assert!(e.to_string().contains("quay.io (via http://"), "{e}");
}

#[tokio::test]
async fn failures_are_classified() {
    let reg = Fake::start(|s, _| match s.uri.as_str() {
        u if u.contains("/unknown/") => reply(
            404,
            &[],
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        ),
        u if u.contains("/denied/") => {
            reply(403, &[], r#"{"errors":[{"code":"DENIED","message":"no"}]}"#)
        }
        u if u.contains("/broken/") => reply(500, &[], "oops"),
        u if u.contains("/liar/") => reply(
            200,
            &[(
                "docker-content-digest",
                "sha256:1111111111111111111111111111111111111111111111111111111111111111",
            )],
            MANIFEST,
        ),
        u if u.contains("/nodigest/") => reply(
            200,
            &[],
            if s.method == "HEAD" {
                &b""[..]
            } else {
                MANIFEST
            },
        ),
        _ => reply(418, &[], ""),
    })
    .await;
    let clients = Clients::default();
    let get = |repo: &str| {
        remote(
            &clients,
            endpoint(&reg.host(), "/v2"),
            &format!("{}/{repo}:v1", reg.host()),
            None,
        )
    };
    let e = get("unknown").manifest(None).await.unwrap_err();
    assert!(matches!(e, ImageError::NotFound(_)), "{e}");
    assert!(
        e.to_string().contains("MANIFEST_UNKNOWN manifest unknown"),
        "{e}"
    );
    let e = get("denied").manifest(None).await.unwrap_err();
    assert!(matches!(e, ImageError::PermissionDenied { .. }), "{e}");
    let e = get("broken").manifest(None).await.unwrap_err();
    assert!(matches!(e, ImageError::Unavailable { .. }), "{e}");
    assert!(e.to_string().contains("HTTP 500: oops"), "{e}");
    let e = get("liar").manifest(None).await.unwrap_err();
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
    // A tag whose HEAD names no digest is resolved by GET.
    assert_eq!(
        get("nodigest").resolve().await.unwrap(),
        Digest::of(MANIFEST)
    );
    // Nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    drop(std::net::TcpListener::bind(closed));
    let r = remote(
        &clients,
        endpoint(&closed.to_string(), "/v2"),
        &format!("{closed}/x:v1"),
        None,
    );
    let e = r.manifest(None).await.unwrap_err();
    assert!(matches!(e, ImageError::Unavailable { .. }), "{e}");
}

#[tokio::test]
async fn tls_without_the_ca_fails_with_the_reason() {
    // A plain-HTTP listener spoken to over TLS: the handshake fails, and
    // the error says it is the registry that is unreachable, over TLS.
    let reg = Fake::start(|_, _| reply(200, &[], "")).await;
    let mut ep = endpoint(&reg.host(), "/v2");
    ep.plain_http = false;
    let r = remote(
        &Clients::default(),
        ep,
        &format!("{}/x:v1", reg.host()),
        None,
    );
    let e = r.manifest(None).await.unwrap_err();
    assert!(matches!(e, ImageError::Unavailable { .. }), "{e}");
    assert!(
        e.to_string().contains(&format!("https://{}", reg.host())),
        "{e}"
    );
}
