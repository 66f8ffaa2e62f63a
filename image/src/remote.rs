//! Talking to one registry endpoint through oci-client, with its errors
//! classified into [`ImageError`]s.

use bytes::Bytes;
use futures_util::Stream;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::digest::Digest;
use crate::error::ImageError;
use crate::hosts::{Credentials, Endpoint};
use crate::manifest::{ACCEPT, Descriptor};
use crate::reference::ImageRef;

/// rustls needs a process-wide crypto provider; berth uses ring.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// One endpoint (registry or mirror) serving one repository.
pub struct Remote {
    client: Client,
    auth: RegistryAuth,
    pub endpoint: Endpoint,
    /// The upstream registry name, for messages.
    registry: String,
    image: ImageRef,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("endpoint", &self.endpoint)
            .field("image", &self.image.to_string())
            .finish()
    }
}

/// Registry clients, reused across pulls: building one loads the system's
/// CA roots (milliseconds), and a reused one keeps its connections and
/// tokens. Keyed by transport settings and credentials, so a pull never
/// rides on another pull's login.
#[derive(Default)]
pub struct Clients {
    map: std::sync::Mutex<std::collections::HashMap<(bool, bool, u64), Client>>,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clients")
    }
}

/// Bounded: a node talks to a handful of registries with a handful of
/// credentials.
const MAX_CLIENTS: usize = 64;

impl Clients {
    fn get(&self, endpoint: &Endpoint, creds: Option<&Credentials>) -> Client {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        format!("{creds:?}").hash(&mut h);
        if let Some(Credentials::Basic { password, .. }) = creds {
            password.hash(&mut h);
        }
        if let Some(Credentials::Bearer(t)) = creds {
            t.hash(&mut h);
        }
        let key = (endpoint.plain_http, endpoint.skip_verify, h.finish());
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(&key) {
            return c.clone();
        }
        if map.len() >= MAX_CLIENTS {
            map.clear();
        }
        let c = new_client(endpoint);
        map.insert(key, c.clone());
        c
    }
}

fn new_client(endpoint: &Endpoint) -> Client {
    install_crypto_provider();
    let config = ClientConfig {
        protocol: if endpoint.plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        accept_invalid_certificates: endpoint.skip_verify,
        platform_resolver: None,
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    };
    Client::new(config)
}

impl Remote {
    pub fn new(
        clients: &Clients,
        endpoint: Endpoint,
        image: &ImageRef,
        creds: Option<&Credentials>,
    ) -> Remote {
        let auth = match creds {
            None => RegistryAuth::Anonymous,
            Some(Credentials::Basic { username, password }) => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Some(Credentials::Bearer(t)) => RegistryAuth::Bearer(t.clone()),
        };
        Remote {
            client: clients.get(&endpoint, creds),
            auth,
            registry: image.registry.clone(),
            endpoint,
            image: image.clone(),
        }
    }

    fn oci_ref(&self, digest: Option<&Digest>) -> Reference {
        let image = match digest {
            Some(d) => self.image.with_digest(*d),
            None => self.image.clone(),
        };
        let mirror =
            (self.endpoint.host != self.image.registry).then_some(self.endpoint.host.as_str());
        image.to_oci(mirror)
    }

    fn classify(&self, what: &str, e: OciDistributionError) -> ImageError {
        let registry = format!("{} (via {})", self.registry, self.endpoint.host);
        let registry = if self.endpoint.host == self.registry {
            self.registry.clone()
        } else {
            registry
        };
        match e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => ImageError::Unauthenticated {
                registry,
                message: format!("{what}: {e}"),
            },
            OciDistributionError::RegistryError { ref envelope, .. } => {
                let code = envelope.errors.first().map(|x| &x.code);
                let message = format!("{what}: {envelope}");
                match code {
                    Some(OciErrorCode::Unauthorized) => {
                        ImageError::Unauthenticated { registry, message }
                    }
                    Some(OciErrorCode::Denied) => {
                        ImageError::PermissionDenied { registry, message }
                    }
                    Some(
                        OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound,
                    ) => ImageError::NotFound(format!("{registry}: {message}")),
                    _ => ImageError::Unavailable { registry, message },
                }
            }
            OciDistributionError::ServerError {
                code, ref message, ..
            } => {
                let message = format!("{what}: HTTP {code}: {}", message.trim());
                match code {
                    401 => ImageError::Unauthenticated { registry, message },
                    403 => ImageError::PermissionDenied { registry, message },
                    404 => ImageError::NotFound(format!("{registry}: {message}")),
                    _ => ImageError::Unavailable { registry, message },
                }
            }
            OciDistributionError::DigestError(ref d) => ImageError::DigestMismatch {
                what: "manifest",
                digest: self.image.digest.unwrap_or(Digest::of(b"")),
                detail: d.to_string(),
            },
            OciDistributionError::UnsupportedMediaTypeError(t) => {
                ImageError::Unsupported(format!("{what}: unsupported media type {t}"))
            }
            OciDistributionError::UnsupportedSchemaVersionError(v) => ImageError::Unsupported(
                format!("{what}: manifest schema version {v} is not supported"),
            ),
            OciDistributionError::RequestError(ref r) => ImageError::Unavailable {
                registry,
                message: format!("{what}: {}", error_chain(r)),
            },
            other => ImageError::Unavailable {
                registry,
                message: format!("{what}: {other}"),
            },
        }
    }

    /// Fetches the manifest (or index) `reference` names: the tag, or `digest`.
    pub async fn manifest(&self, digest: Option<&Digest>) -> Result<(Bytes, Digest), ImageError> {
        let r = self.oci_ref(digest);
        let (body, d) = self
            .client
            .pull_manifest_raw(&r, &self.auth, ACCEPT)
            .await
            .map_err(|e| self.classify("manifest", e))?;
        let actual = Digest::of(&body);
        // The registry's Docker-Content-Digest must agree with the bytes.
        if d != actual.to_string() || digest.is_some_and(|want| *want != actual) {
            return Err(ImageError::DigestMismatch {
                what: "manifest",
                digest: digest.copied().unwrap_or(actual),
                detail: format!("registry said {d}, content is {actual}"),
            });
        }
        Ok((body, actual))
    }

    /// A small blob (config) held in memory, digest-checked.
    pub async fn blob(&self, desc: &Descriptor) -> Result<Bytes, ImageError> {
        let mut buf = Vec::with_capacity(desc.size.min(16 << 20) as usize);
        let oci_desc = to_oci_descriptor(desc);
        self.client
            .pull_blob(&self.oci_ref(None), &oci_desc, &mut buf)
            .await
            .map_err(|e| match e {
                OciDistributionError::DigestError(d) => ImageError::DigestMismatch {
                    what: "blob",
                    digest: desc.digest,
                    detail: d.to_string(),
                },
                other => self.classify(&format!("blob {}", desc.digest), other),
            })?;
        Ok(Bytes::from(buf))
    }

    /// A blob as a stream of chunks. The caller verifies digest and size.
    pub async fn blob_stream(
        &self,
        desc: &Descriptor,
    ) -> Result<impl Stream<Item = Result<Bytes, std::io::Error>> + use<>, ImageError> {
        let oci_desc = to_oci_descriptor(desc);
        let resp = self
            .client
            .pull_blob_stream_partial(&self.oci_ref(None), &oci_desc, 0, None)
            .await
            .map_err(|e| self.classify(&format!("blob {}", desc.digest), e))?;
        let sized = match resp {
            oci_client::client::BlobResponse::Full(s) => s,
            oci_client::client::BlobResponse::Partial(s) => s,
        };
        Ok(sized.stream)
    }
}

fn to_oci_descriptor(d: &Descriptor) -> oci_client::manifest::OciDescriptor {
    oci_client::manifest::OciDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.to_string(),
        size: d.size as i64,
        ..Default::default()
    }
}

/// The innermost cause of an error, where the useful words usually are.
fn error_chain(e: &dyn std::error::Error) -> String {
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
