//! The certificate files hosts.toml names (`ca`, `client`), read and
//! checked when the file is loaded: a missing file, a file without a
//! certificate, an unusable key or a key that does not belong to its
//! certificate is the hosts.toml's error, naming the file.
//!
//! Private keys are kept as DER and never printed (`Debug` redacts them);
//! errors about a key file say what is wrong, never what is in it.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A client certificate chain and its private key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientCert {
    /// DER certificates, the end-entity one first.
    pub chain: Vec<CertificateDer<'static>>,
    key: KeyDer,
}

/// A private key's DER and its PEM kind.
#[derive(Clone, PartialEq, Eq, Hash)]
struct KeyDer {
    kind: KeyKind,
    der: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum KeyKind {
    Pkcs8,
    Pkcs1,
    Sec1,
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCert")
            .field("certificates", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ClientCert {
    /// The key as rustls takes it.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        let der = self.key.der.clone();
        match self.key.kind {
            KeyKind::Pkcs8 => PrivateKeyDer::Pkcs8(der.into()),
            KeyKind::Pkcs1 => PrivateKeyDer::Pkcs1(der.into()),
            KeyKind::Sec1 => PrivateKeyDer::Sec1(der.into()),
        }
    }

    /// The certificate and key as rustls signs with them; fails when the
    /// key cannot be used or is not the certificate's.
    pub fn certified_key(&self) -> Result<rustls::sign::CertifiedKey, rustls::Error> {
        rustls::sign::CertifiedKey::from_der(self.chain.clone(), self.key(), &provider())
    }
}

/// The crypto provider berth's TLS uses (ring), also before berthd
/// installed it process-wide.
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

/// Every certificate of a PEM file, at least one.
fn certificates(
    path: &Path,
    data: &[u8],
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(data)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} {}: not a valid PEM file ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate (BEGIN CERTIFICATE) in it",
            path.display()
        ));
    }
    Ok(certs)
}

/// `ca` files: CA certificates trusted besides the system's.
pub fn load_roots(files: &[impl AsRef<Path>]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut out = Vec::new();
    for f in files {
        let path = f.as_ref();
        let certs = certificates(path, &read(path, "key `ca`:")?, "key `ca`:")?;
        for c in certs {
            // What rustls will do with it: a certificate it cannot take as
            // a trust anchor is this file's error, not a failed pull's.
            rustls::RootCertStore::empty().add(c.clone()).map_err(|e| {
                format!(
                    "key `ca`: {}: not a usable CA certificate: {e}",
                    path.display()
                )
            })?;
            out.push(c);
        }
    }
    Ok(out)
}

/// One `client` entry: the certificate file and the key file (None: the
/// key is in the certificate file).
pub fn load_client(cert: &Path, key: Option<&Path>) -> Result<ClientCert, String> {
    let cert_data = read(cert, "key `client`:")?;
    let chain = certificates(cert, &cert_data, "key `client`:")?;
    let (key_path, key_data) = match key {
        Some(k) => (k, read(k, "key `client`:")?),
        None => (cert, cert_data),
    };
    // The PEM error is not shown: it could quote the key file.
    let parsed = PrivateKeyDer::from_pem_slice(&key_data).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!(
            "key `client`: {}: no private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) in it",
            key_path.display()
        ),
        _ => format!(
            "key `client`: {}: the private key is not valid PEM",
            key_path.display()
        ),
    })?;
    let (kind, der) = match parsed {
        PrivateKeyDer::Pkcs8(k) => (KeyKind::Pkcs8, k.secret_pkcs8_der().to_vec()),
        PrivateKeyDer::Pkcs1(k) => (KeyKind::Pkcs1, k.secret_pkcs1_der().to_vec()),
        PrivateKeyDer::Sec1(k) => (KeyKind::Sec1, k.secret_sec1_der().to_vec()),
        _ => {
            return Err(format!(
                "key `client`: {}: unsupported private key format",
                key_path.display()
            ));
        }
    };
    let client = ClientCert {
        chain,
        key: KeyDer { kind, der },
    };
    client.certified_key().map_err(|e| {
        let e = match e {
            rustls::Error::InconsistentKeys(_) => "the key is not the certificate's".to_owned(),
            other => other.to_string(),
        };
        format!(
            "key `client`: certificate {} with key {}: {e}",
            cert.display(),
            key_path.display()
        )
    })?;
    Ok(client)
}

/// The issuer name (DER, with its SEQUENCE header) of a DER certificate,
/// for choosing among client certificates by the CAs a server accepts.
pub fn issuer(cert: &[u8]) -> Option<&[u8]> {
    /// One DER element: (tag, whole element, content, rest).
    type Element<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);
    fn element(buf: &[u8]) -> Option<Element<'_>> {
        let (&tag, rest) = buf.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
            (len, &rest[n..])
        };
        let header = buf.len() - rest.len();
        if rest.len() < len {
            return None;
        }
        Some((tag, &buf[..header + len], &rest[..len], &rest[len..]))
    }
    let (_, _, cert, _) = element(cert)?;
    let (_, _, tbs, _) = element(cert)?;
    let (mut tag, mut whole, _, mut rest) = element(tbs)?;
    if tag == 0xa0 {
        // [0] version
        (tag, whole, _, rest) = element(rest)?;
    }
    let _serial = (tag == 0x02).then_some(whole)?;
    let (_, _, _, rest) = element(rest)?; // signature algorithm
    let (tag, issuer, _, _) = element(rest)?;
    (tag == 0x30).then_some(issuer)
}
