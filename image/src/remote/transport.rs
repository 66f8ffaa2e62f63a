//! HTTP clients, one per transport (TLS trust, client certificates,
//! dial timeout, proxy), reused across pulls: building one loads the
//! system's CA roots (milliseconds), and a reused one keeps its
//! connections. Credentials and tokens are per request, not per client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest as _, Sha256};

use super::auth::Tokens;
use crate::hosts::{self, Transport};

/// Clients cached at most: a node talks to a handful of registries.
const MAX_CLIENTS: usize = 64;
/// Without `dial_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the next bytes of a response.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Registry clients and the authorizations hosts accepted.
#[derive(Default)]
pub struct Clients {
    map: Mutex<HashMap<[u8; 32], reqwest::Client>>,
    pub(super) tokens: Arc<Tokens>,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clients")
    }
}

/// Feeds `Hash` into SHA-256: a key for everything that shapes a
/// transport, private keys included, without keeping them twice.
struct Sha(Sha256);

impl std::hash::Hasher for Sha {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0 // unused: the digest is taken with finalize
    }
}

fn key(t: &Transport) -> [u8; 32] {
    use std::hash::Hash;
    let mut h = Sha(Sha256::new());
    t.hash(&mut h);
    h.0.finalize().into()
}

impl Clients {
    /// The client for `t`, built on first use.
    pub fn get(&self, t: &Transport) -> Result<reqwest::Client, String> {
        let k = key(t);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(&k) {
            return Ok(c.clone());
        }
        if map.len() >= MAX_CLIENTS {
            map.clear();
        }
        let c = build(t)?;
        map.insert(k, c.clone());
        Ok(c)
    }

    /// How many clients are cached (tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn build(t: &Transport) -> Result<reqwest::Client, String> {
    let provider = Arc::new(hosts::provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = if t.skip_verify {
        Arc::new(AnyCertificate(provider.clone()))
    } else {
        Arc::new(
            rustls_platform_verifier::Verifier::new_with_extra_roots(
                t.roots.clone(),
                provider.clone(),
            )
            .map_err(|e| format!("TLS trust (system roots and `ca`): {e}"))?,
        )
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut tls = if t.clients.is_empty() {
        builder.with_no_client_auth()
    } else {
        builder.with_client_cert_resolver(Arc::new(ClientCerts::new(&t.clients)?))
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(t.dial_timeout.unwrap_or(CONNECT_TIMEOUT))
        .read_timeout(READ_TIMEOUT)
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        // Blobs are served by redirect to storage; reqwest drops the
        // Authorization header when the redirect leaves the host.
        .redirect(reqwest::redirect::Policy::limited(10));
    if let Some(p) = &t.proxy {
        b = b.proxy(reqwest::Proxy::all(p).map_err(|e| format!("proxy {p}: {e}"))?);
    }
    b.build()
        .map_err(|e| format!("HTTP client: {}", super::error_chain(&e)))
}

/// `skip_verify`: any certificate chain and name is accepted; the
/// handshake's signatures are still checked against the certificate, as
/// Go's InsecureSkipVerify does.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `client`: several certificates, the one for a CA the server names sent
/// (as Go's client picks), else the first the server's schemes allow.
#[derive(Debug)]
struct ClientCerts(Vec<(Arc<CertifiedKey>, Vec<Vec<u8>>)>);

impl ClientCerts {
    fn new(clients: &[hosts::ClientCert]) -> Result<ClientCerts, String> {
        let mut out = Vec::new();
        for c in clients {
            let key = c
                .certified_key()
                .map_err(|e| format!("client certificate: {e}"))?;
            // Each certificate's issuer, with and without its SEQUENCE
            // header (servers' hints come either way).
            let mut issuers = Vec::new();
            for cert in &c.chain {
                if let Some(i) = hosts::issuer(cert) {
                    issuers.push(i.to_vec());
                    if let Some(inner) = der_content(i) {
                        issuers.push(inner.to_vec());
                    }
                }
            }
            out.push((Arc::new(key), issuers));
        }
        Ok(ClientCerts(out))
    }
}

/// The content of a DER element (its tag and length dropped).
fn der_content(e: &[u8]) -> Option<&[u8]> {
    let first = *e.get(1)?;
    let header = if first < 0x80 {
        2
    } else {
        2 + (first & 0x7f) as usize
    };
    e.get(header..)
}

impl ResolvesClientCert for ClientCerts {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let usable = || {
            self.0
                .iter()
                .filter(|(k, _)| k.key.choose_scheme(sigschemes).is_some())
        };
        let named = |issuers: &Vec<Vec<u8>>| {
            root_hint_subjects
                .iter()
                .any(|h| issuers.iter().any(|i| i.as_slice() == *h))
        };
        usable()
            .find(|(_, issuers)| root_hint_subjects.is_empty() || named(issuers))
            .or_else(|| usable().next())
            .map(|(k, _)| k.clone())
    }

    fn has_certs(&self) -> bool {
        !self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_shared_per_transport() {
        crate::remote::install_crypto_provider();
        let c = Clients::default();
        let plain = Transport::default();
        let skip = Transport {
            skip_verify: true,
            ..Transport::default()
        };
        c.get(&plain).unwrap();
        c.get(&plain).unwrap();
        assert_eq!(c.len(), 1);
        c.get(&skip).unwrap();
        let timeout = Transport {
            dial_timeout: Some(Duration::from_secs(1)),
            ..Transport::default()
        };
        c.get(&timeout).unwrap();
        assert_eq!(c.len(), 3);
        assert_ne!(key(&plain), key(&skip));
    }

    #[test]
    fn a_proxy_url_reqwest_refuses_is_an_error() {
        crate::remote::install_crypto_provider();
        let t = Transport {
            proxy: Some("http://[::1".into()),
            ..Transport::default()
        };
        assert!(Clients::default().get(&t).unwrap_err().contains("proxy"));
    }
}
