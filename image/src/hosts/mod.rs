//! Where to fetch an image from: containerd's `hosts.toml` directory
//! layout, so operators' existing registry configuration works unchanged.
//!
//! ```toml
//! # <registry_config_dir>/docker.io/hosts.toml
//! server = "https://registry-1.docker.io"   # the upstream (optional)
//!
//! [host."https://mirror.internal/dockerhub"]  # mirrors, tried in this order
//!   capabilities = ["pull", "resolve"]
//!   ca = "mirror-ca.pem"                    # relative to this file's dir
//!   client = [["client.pem", "client.key"]] # mTLS
//!   dial_timeout = "2s"
//!   [host."https://mirror.internal/dockerhub".header]
//!     x-mirror-token = "…"                  # sent on every request to it
//! ```
//!
//! Every key containerd documents is honoured, for the `server` at the top
//! level and for each `[host."<url>"]`:
//!
//! - `capabilities`: `pull` (fetch by digest), `resolve` (tag to digest),
//!   `push` (ignored: berth does not push). A host without `pull` and
//!   `resolve` is skipped. Tags are resolved by the first host that may
//!   resolve; content is then fetched by digest from the hosts that may
//!   pull, in order (a public mirror with `pull` only is never trusted with
//!   a tag).
//! - `skip_verify`: accept any TLS certificate.
//! - `ca`: a path or a list of paths of CA certificates (PEM) trusted for
//!   this host besides the system's.
//! - `client`: a client certificate for mTLS: a path (certificate and key
//!   in one PEM file), a list of paths, or a list of `[certificate, key]`
//!   pairs. With several, the one whose issuer the server asks for is sent.
//! - `header`: a table of name = "value" or name = ["values"], sent with
//!   every request to the host.
//! - `override_path`: the URL's path is the API root itself. Otherwise, as
//!   containerd, `/v2` is appended to the URL's path unless it already ends
//!   with it: `https://mirror/some/prefix` is asked for
//!   `https://mirror/some/prefix/v2/<repo>/manifests/<ref>`.
//! - `dial_timeout` (a Go duration, `"1s"`), `proxy` (an `http://` or
//!   `https://` proxy URL; it replaces the environment's proxy settings for
//!   this host; SOCKS is refused).
//!
//! Relative paths are relative to the hosts.toml's directory. Requests to
//! a host other than the registry carry `?ns=<registry>` (containerd's
//! mirror convention).
//!
//! The directory of `registry` is, as containerd looks it up:
//! `<dir>/<host>_<port>_/` (for `host:port`), `<dir>/<host:port>/`,
//! `<dir>/_default/`; the first that exists. Without a hosts.toml in it,
//! Docker's certificate files apply to the registry itself (`*.crt`: CA
//! certificates; `*.cert` with `*.key`: client certificates). Without any
//! directory the registry itself is the only host. A registry on a loopback
//! address is reached over plain HTTP unless its `server` says `https://`
//! or it has certificate files, as Docker and containerd allow.
//!
//! Each file stands alone: it is read, with its certificate files, for each
//! pull of its registry, and any fault (an unknown key, a missing or
//! unparsable certificate file, a key that is not its certificate's) fails
//! that registry's pulls with an error naming the file and the key; other
//! registries are not affected. A silently ignored key would send pulls
//! somewhere the operator did not intend (air-gapped nodes reaching for the
//! internet), so none is ignored. [`survey`] reports every directory for
//! berthd's start-up log and `berth info`.

mod certs;
mod parse;

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use serde::Serialize;

pub use certs::{ClientCert, issuer, provider};

/// One place to fetch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`.
    pub host: String,
    /// The API root's path: `/v2`, `/prefix/v2`, or with `override_path`
    /// what the URL says (may be empty). No trailing `/`.
    pub path: String,
    /// Plain HTTP instead of HTTPS.
    pub plain_http: bool,
    /// May serve content by digest (`pull` capability).
    pub pull: bool,
    /// May resolve tags to digests (`resolve` capability).
    pub resolve: bool,
    /// A `[host]` entry rather than the upstream (`server`).
    pub mirror: bool,
    /// Headers sent with every request (`header`).
    pub headers: Vec<(String, String)>,
    /// How connections are made.
    pub transport: Transport,
    /// The hosts.toml (or certificate directory) this came from.
    pub config: Option<PathBuf>,
}

/// Everything that changes how connections to a host are made: one HTTP
/// client serves every host with equal settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Transport {
    /// Accept any TLS certificate (`skip_verify`).
    pub skip_verify: bool,
    /// CA certificates trusted besides the system's (`ca`).
    pub roots: Vec<CertificateDer<'static>>,
    /// Client certificates (`client`).
    pub clients: Vec<ClientCert>,
    /// `dial_timeout`.
    pub dial_timeout: Option<Duration>,
    /// `proxy`.
    pub proxy: Option<String>,
}

impl Endpoint {
    /// `http[s]://host[:port]`.
    pub fn origin(&self) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{}", self.host)
    }

    /// The API root URL, e.g. `https://mirror/prefix/v2`.
    pub fn base_url(&self) -> String {
        format!("{}{}", self.origin(), self.path)
    }

    /// What the host may do, as hosts.toml spells it.
    pub fn capabilities(&self) -> Vec<&'static str> {
        let mut c = Vec::new();
        if self.pull {
            c.push("pull");
        }
        if self.resolve {
            c.push("resolve");
        }
        c
    }
}

#[derive(Debug, thiserror::Error)]
#[error("registry config {path}: {message}")]
pub struct HostsError {
    pub path: String,
    pub message: String,
}

/// True for `localhost`, `127.0.0.0/8` and `::1`, with or without a port.
pub fn is_loopback(host: &str) -> bool {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        }),
    };
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A host URL of hosts.toml as (plain_http, host[:port], API root path),
/// by containerd's rule: no scheme means https; the path is cleaned and
/// `/v2` appended unless it ends with it or `override_path` is set.
fn host_url(
    url: &str,
    override_path: bool,
    default_http: bool,
) -> Result<(bool, String, String), String> {
    let full = if url.starts_with("http://") || url.starts_with("https://") {
        url.to_owned()
    } else if url.contains("://") {
        return Err(format!("{url:?}: the scheme must be http or https"));
    } else {
        let scheme = if default_http { "http" } else { "https" };
        format!("{scheme}://{url}")
    };
    let parsed = reqwest::Url::parse(&full).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let name = parsed.host_str().unwrap_or_default();
    if name.is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty() {
        return Err(format!(
            "{url:?}: a host URL has no user, query or fragment (credentials go in auth_file)"
        ));
    }
    let host = match parsed.port() {
        Some(p) => format!("{name}:{p}"),
        None => name.to_owned(),
    };
    let mut path = String::new();
    for seg in parsed.path().split('/').filter(|s| !s.is_empty()) {
        path.push('/');
        path.push_str(seg);
    }
    if !override_path && !path.ends_with("/v2") {
        path.push_str("/v2");
    }
    Ok((parsed.scheme() == "http", host, path))
}

/// The connection settings of one host's keys, its files loaded.
fn transport(keys: &parse::Keys) -> Result<Transport, String> {
    let mut clients = Vec::new();
    for (cert, key) in &keys.client {
        clients.push(certs::load_client(cert, key.as_deref())?);
    }
    Ok(Transport {
        skip_verify: keys.skip_verify,
        roots: certs::load_roots(&keys.ca)?,
        clients,
        dial_timeout: keys.dial_timeout,
        proxy: keys.proxy.clone(),
    })
}

/// The API host of a registry name (Docker Hub's is elsewhere).
fn api_host(registry: &str, host: &str) -> String {
    match (registry, host) {
        ("docker.io", "docker.io" | "index.docker.io") => "registry-1.docker.io".into(),
        _ => host.to_owned(),
    }
}

/// The registry's own (upstream) endpoint when no config says otherwise.
fn default_upstream(registry: &str) -> Endpoint {
    Endpoint {
        host: api_host(registry, registry),
        path: "/v2".into(),
        plain_http: is_loopback(registry),
        pull: true,
        resolve: true,
        mirror: false,
        headers: Vec::new(),
        transport: Transport::default(),
        config: None,
    }
}

/// The directories containerd would look in for `registry`, in order:
/// `host_port_` (its rule: split at the last `:`), the name itself,
/// `_default`.
fn candidate_dirs(config_dir: &Path, registry: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(i) = registry.rfind(':')
        && i > 0
    {
        out.push(config_dir.join(format!("{}_{}_", &registry[..i], &registry[i + 1..])));
    }
    // A registry name with a path separator or dots alone never names a
    // directory outside config_dir (parsed references cannot carry them).
    if !registry.contains('/') && !registry.trim_matches('.').is_empty() {
        out.push(config_dir.join(registry));
    }
    out.push(config_dir.join("_default"));
    out
}

/// Endpoints to try for `registry`, in order.
pub fn endpoints(config_dir: &Path, registry: &str) -> Result<Vec<Endpoint>, HostsError> {
    match candidate_dirs(config_dir, registry)
        .into_iter()
        .find(|d| d.is_dir())
    {
        Some(dir) => load_dir(&dir, registry).map(|(_, e)| e),
        None => Ok(vec![default_upstream(registry)]),
    }
}

/// The endpoints one directory gives `registry`, and the file they come
/// from (the directory itself for Docker's certificate files).
fn load_dir(dir: &Path, registry: &str) -> Result<(PathBuf, Vec<Endpoint>), HostsError> {
    let file = dir.join("hosts.toml");
    match fs::read_to_string(&file) {
        Ok(text) => {
            let err = |message: String| HostsError {
                path: file.display().to_string(),
                message,
            };
            let parsed = parse::parse(&text, dir).map_err(err)?;
            let eps = build(&parsed, registry, &file).map_err(err)?;
            Ok((file, eps))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let eps = docker_cert_files(dir, registry).map_err(|message| HostsError {
                path: dir.display().to_string(),
                message,
            })?;
            Ok((dir.to_owned(), eps))
        }
        Err(e) => Err(HostsError {
            path: file.display().to_string(),
            message: e.to_string(),
        }),
    }
}

/// The endpoints of a parsed hosts.toml: its hosts, then the upstream.
fn build(parsed: &parse::HostsFile, registry: &str, file: &Path) -> Result<Vec<Endpoint>, String> {
    let caps = |keys: &parse::Keys| -> (bool, bool) {
        match &keys.capabilities {
            None => (true, true),
            Some(c) => (
                c.iter().any(|c| c == "pull"),
                c.iter().any(|c| c == "resolve"),
            ),
        }
    };
    let mut out = Vec::new();
    for (url, keys) in &parsed.hosts {
        let (pull, resolve) = caps(keys);
        let at = |e: String| format!("host {url:?}: {e}");
        let (plain_http, host, path) = host_url(url, keys.override_path, false).map_err(at)?;
        // Files are checked also for a host that is skipped.
        let transport = transport(keys).map_err(at)?;
        if !pull && !resolve {
            continue;
        }
        out.push(Endpoint {
            host,
            path,
            plain_http,
            pull,
            resolve,
            mirror: true,
            headers: keys.header.clone(),
            transport,
            config: Some(file.to_owned()),
        });
    }
    let keys = &parsed.server_keys;
    let (pull, resolve) = caps(keys);
    let transport = transport(keys)?;
    if pull || resolve {
        let (plain_http, host, path) = match &parsed.server {
            Some(server) => {
                let (plain, host, path) =
                    host_url(server, keys.override_path, is_loopback(registry))
                        .map_err(|e| format!("key `server`: {e}"))?;
                (plain, api_host(registry, &host), path)
            }
            None => {
                let d = default_upstream(registry);
                let path = if keys.override_path {
                    String::new()
                } else {
                    d.path
                };
                (d.plain_http, d.host, path)
            }
        };
        let upstream = Endpoint {
            host,
            path,
            plain_http,
            pull,
            resolve,
            mirror: false,
            headers: keys.header.clone(),
            transport,
            config: Some(file.to_owned()),
        };
        let same = |e: &Endpoint| {
            (&e.host, &e.path, e.plain_http)
                == (&upstream.host, &upstream.path, upstream.plain_http)
        };
        if !out.iter().any(same) {
            out.push(upstream);
        }
    }
    if !out.iter().any(|e| e.pull) {
        return Err(
            "no host may pull: neither the server nor any [host] has the pull capability".into(),
        );
    }
    Ok(out)
}

/// Docker's certificate files in a registry's directory without a
/// hosts.toml: `*.crt` CA certificates, `*.cert` client certificates with
/// the `*.key` of the same name (or the key inside the `.cert`).
fn docker_cert_files(dir: &Path, registry: &str) -> Result<Vec<Endpoint>, String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut keys = parse::Keys::default();
    for n in &names {
        if n.ends_with(".crt") {
            keys.ca.push(dir.join(n));
        } else if let Some(base) = n.strip_suffix(".cert") {
            let key = dir.join(format!("{base}.key"));
            keys.client.push((dir.join(n), key.exists().then_some(key)));
        }
    }
    let mut upstream = default_upstream(registry);
    if !keys.ca.is_empty() || !keys.client.is_empty() {
        // Certificates only make sense over TLS, also on loopback.
        upstream.plain_http = false;
        upstream.transport = transport(&keys)?;
        upstream.config = Some(dir.to_owned());
    }
    Ok(vec![upstream])
}

/// One registry's configuration as `berth info` and berthd's start-up log
/// show it.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryConfig {
    /// The registry name (`host[:port]`), or `_default`.
    pub registry: String,
    /// The hosts.toml, or the directory of Docker certificate files.
    pub file: String,
    /// The hosts in the order they are tried (empty on error).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostInfo>,
    /// Why the file cannot be used; its registry's pulls fail with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One host of a [`RegistryConfig`].
#[derive(Debug, Clone, Serialize)]
pub struct HostInfo {
    /// The API root, e.g. `https://mirror/prefix/v2`.
    pub url: String,
    pub capabilities: Vec<&'static str>,
    /// A `[host]` entry (tried before the upstream).
    pub mirror: bool,
    /// CA files, client certificates, skip_verify, header names: what
    /// shapes the connection, never a secret.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<String>,
}

impl HostInfo {
    fn of(e: &Endpoint) -> HostInfo {
        let t = &e.transport;
        let mut settings = Vec::new();
        if t.skip_verify {
            settings.push("skip_verify".to_owned());
        }
        if !t.roots.is_empty() {
            settings.push(format!("ca: {} certificate(s)", t.roots.len()));
        }
        if !t.clients.is_empty() {
            settings.push(format!("client: {} certificate(s)", t.clients.len()));
        }
        if let Some(d) = t.dial_timeout {
            settings.push(format!("dial_timeout: {d:?}"));
        }
        if let Some(p) = &t.proxy {
            settings.push(format!("proxy: {p}"));
        }
        let mut names: Vec<&str> = e.headers.iter().map(|(n, _)| n.as_str()).collect();
        names.dedup();
        if !names.is_empty() {
            settings.push(format!("header: {}", names.join(", ")));
        }
        HostInfo {
            url: e.base_url(),
            capabilities: e.capabilities(),
            mirror: e.mirror,
            settings,
        }
    }
}

/// The registry a directory name stands for: `host_port_` is `host:port`.
fn registry_of_dir(name: &str) -> String {
    if let Some(inner) = name.strip_suffix('_')
        && let Some((host, port)) = inner.rsplit_once('_')
        && !host.is_empty()
        && !port.is_empty()
        && port.chars().all(|c| c.is_ascii_digit())
    {
        return format!("{host}:{port}");
    }
    name.to_owned()
}

/// Every registry directory under `config_dir`, each loaded on its own.
/// `_default`'s upstream is shown as `<registry>`.
pub fn survey(config_dir: &Path) -> Vec<RegistryConfig> {
    let Ok(rd) = fs::read_dir(config_dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<(String, PathBuf)> = rd
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|(name, dir)| {
            let registry = if name == "_default" {
                "<registry>".to_owned()
            } else {
                registry_of_dir(&name)
            };
            let shown = if name == "_default" {
                name.clone()
            } else {
                registry.clone()
            };
            match load_dir(&dir, &registry) {
                Ok((file, eps)) => RegistryConfig {
                    registry: shown,
                    file: file.display().to_string(),
                    hosts: eps.iter().map(HostInfo::of).collect(),
                    error: None,
                },
                Err(e) => RegistryConfig {
                    registry: shown,
                    file: e.path.clone(),
                    hosts: Vec::new(),
                    error: Some(e.to_string()),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
