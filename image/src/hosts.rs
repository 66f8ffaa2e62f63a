//! Where to fetch an image from, and with which credentials.
//!
//! Registry hosts use containerd's `hosts.toml` directory layout, so
//! operators' existing mirror configuration works unchanged:
//!
//! ```toml
//! # <registry_config_dir>/docker.io/hosts.toml
//! server = "https://registry-1.docker.io"   # the upstream (optional)
//!
//! [host."http://10.0.0.5:5000"]              # mirrors, tried in this order
//!   capabilities = ["pull", "resolve"]
//!   skip_verify = true
//! ```
//!
//! Mirrors are tried in file order, then the upstream (`server`, or the
//! registry itself). To use only a mirror, set `server` to the mirror.
//! `<dir>/_default/hosts.toml` applies to registries without a directory.
//! A registry on a loopback address is reached over plain HTTP without any
//! configuration, as Docker and containerd allow.
//!
//! Keys containerd documents that berth does not honour yet (`ca`,
//! `client`, `header`, `override_path`) and a path in a host URL are
//! refused with an error naming the file and the key, as is any unknown
//! key: a mirror silently ignored sends pulls somewhere the operator did
//! not intend (air-gapped nodes reaching for the internet).
//!
//! Credentials come from the PullImage request (kubelet's pull secrets),
//! else from the auth file in Docker's `config.json` format.

use std::fs;
use std::net::IpAddr;
use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;

/// One place to fetch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`, as oci-client addresses registries.
    pub host: String,
    /// Plain HTTP instead of HTTPS.
    pub plain_http: bool,
    /// Accept any TLS certificate.
    pub skip_verify: bool,
    /// May resolve tags to digests (`resolve` capability).
    pub resolve: bool,
    /// A mirror rather than the registry itself.
    pub mirror: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("registry config {path}: {message}")]
pub struct HostsError {
    pub path: String,
    pub message: String,
}

/// Keys of containerd's hosts.toml that berth does not honour yet.
const NOT_YET: &[&str] = &["ca", "client", "header", "override_path"];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsFile {
    server: Option<String>,
    #[serde(default)]
    skip_verify: Option<bool>,
    #[serde(default)]
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    host: toml::Table,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostEntry {
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    skip_verify: bool,
}

/// Refuses the keys berth cannot honour yet, before serde reports them
/// as unknown, so the message says what is missing.
fn refuse_unsupported(table: &toml::Table, what: &str) -> Result<(), String> {
    match NOT_YET.iter().find(|k| table.contains_key(**k)) {
        Some(k) => Err(format!(
            "{what}key `{k}` is not supported by berth yet; remove it or use a registry that does not need it (pulls would otherwise go out without it)"
        )),
        None => Ok(()),
    }
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

/// Splits `http://host:port/path` into (plain_http, host:port).
fn parse_url(url: &str) -> Result<(bool, String), String> {
    let (plain, rest) = if let Some(r) = url.strip_prefix("http://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (false, r)
    } else {
        (false, url)
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    Ok((plain, host.to_owned()))
}

/// A registry host URL of hosts.toml: as [`parse_url`], refusing a path
/// berth would drop (containerd's `/v2` API root is accepted).
fn parse_host_url(url: &str) -> Result<(bool, String), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let path = rest
        .split_once('/')
        .map_or("", |(_, p)| p)
        .trim_matches('/');
    if !path.is_empty() && path != "v2" {
        return Err(format!(
            "{url:?}: a path in a host URL is not supported by berth yet (it would be dropped)"
        ));
    }
    parse_url(url)
}

/// The registry's own (upstream) endpoint when no config says otherwise.
fn default_upstream(registry: &str) -> Endpoint {
    Endpoint {
        host: registry.to_owned(),
        plain_http: is_loopback(registry),
        skip_verify: false,
        resolve: true,
        mirror: false,
    }
}

/// Endpoints to try for `registry`, in order.
pub fn endpoints(config_dir: &Path, registry: &str) -> Result<Vec<Endpoint>, HostsError> {
    let mut file = config_dir.join(registry).join("hosts.toml");
    if !file.is_file() {
        file = config_dir.join("_default").join("hosts.toml");
        if !file.is_file() {
            return Ok(vec![default_upstream(registry)]);
        }
    }
    let err = |message: String| HostsError {
        path: file.display().to_string(),
        message,
    };
    let text = fs::read_to_string(&file).map_err(|e| err(e.to_string()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| err(e.message().to_owned()))?;
    refuse_unsupported(&table, "").map_err(err)?;
    let parsed: HostsFile = table
        .try_into()
        .map_err(|e: toml::de::Error| err(e.message().to_owned()))?;
    let mut out = Vec::new();
    for (url, entry) in &parsed.host {
        if let Some(t) = entry.as_table() {
            refuse_unsupported(t, &format!("host {url:?}: ")).map_err(err)?;
        }
        let entry: HostEntry = entry
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| err(format!("host {url:?}: {}", e.message())))?;
        let caps = entry
            .capabilities
            .unwrap_or_else(|| vec!["pull".into(), "resolve".into()]);
        if !caps.iter().any(|c| c == "pull") {
            continue;
        }
        let (plain_http, host) = parse_host_url(url).map_err(err)?;
        out.push(Endpoint {
            host,
            plain_http,
            skip_verify: entry.skip_verify,
            resolve: caps.iter().any(|c| c == "resolve"),
            mirror: true,
        });
    }
    // The top-level capabilities are the upstream's (containerd's
    // meaning): without "pull", only the mirrors serve pulls.
    let server_caps = parsed
        .capabilities
        .clone()
        .unwrap_or_else(|| vec!["pull".into(), "resolve".into()]);
    if !server_caps.iter().any(|c| c == "pull") {
        if out.is_empty() {
            return Err(err(
                "the upstream lacks the pull capability and no host may pull".into(),
            ));
        }
        return Ok(out);
    }
    let upstream = match &parsed.server {
        Some(server) => {
            let (plain_http, host) = parse_host_url(server).map_err(err)?;
            Endpoint {
                host,
                plain_http: plain_http
                    || (is_loopback(registry) && !server.starts_with("https://")),
                skip_verify: parsed.skip_verify.unwrap_or(false),
                resolve: server_caps.iter().any(|c| c == "resolve"),
                mirror: false,
            }
        }
        None => Endpoint {
            skip_verify: parsed.skip_verify.unwrap_or(false),
            ..default_upstream(registry)
        },
    };
    // docker.io's API lives elsewhere; oci-client maps the name itself.
    let upstream = if upstream.host == "registry-1.docker.io" && registry == "docker.io" {
        Endpoint {
            host: "docker.io".into(),
            ..upstream
        }
    } else {
        upstream
    };
    if !out.contains(&upstream) {
        out.push(upstream);
    }
    Ok(out)
}

/// Credentials for one registry. `Debug` never prints secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    /// A registry (bearer) token used as is.
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// The fields of CRI's AuthConfig and of Docker's config.json entries.
#[derive(Default, Clone, Deserialize)]
pub struct AuthFields {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub auth: String,
    #[serde(default, alias = "identitytoken")]
    pub identity_token: String,
    #[serde(default, alias = "registrytoken")]
    pub registry_token: String,
}

impl std::fmt::Debug for AuthFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthFields(<redacted>)")
    }
}

impl AuthFields {
    /// None when nothing is set.
    pub fn credentials(&self) -> Result<Option<Credentials>, String> {
        if !self.registry_token.is_empty() {
            return Ok(Some(Credentials::Bearer(self.registry_token.clone())));
        }
        if !self.identity_token.is_empty() {
            // Registries that issue identity tokens accept them as the
            // password of the token endpoint's basic authentication.
            let username = if self.username.is_empty() {
                "<token>".to_owned()
            } else {
                self.username.clone()
            };
            return Ok(Some(Credentials::Basic {
                username,
                password: self.identity_token.clone(),
            }));
        }
        if !self.auth.is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(self.auth.trim())
                .map_err(|_| "auth is not base64".to_owned())?;
            let text = String::from_utf8(decoded).map_err(|_| "auth is not UTF-8".to_owned())?;
            let (u, p) = text
                .split_once(':')
                .ok_or_else(|| "auth is not base64(username:password)".to_owned())?;
            return Ok(Some(Credentials::Basic {
                username: u.to_owned(),
                password: p.to_owned(),
            }));
        }
        if !self.username.is_empty() {
            return Ok(Some(Credentials::Basic {
                username: self.username.clone(),
                password: self.password.clone(),
            }));
        }
        Ok(None)
    }
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthFields>,
}

/// `https://index.docker.io/v1/` → `docker.io`; `host:port/path` → `host:port`.
fn auth_key(key: &str) -> String {
    let host = parse_url(key)
        .map(|(_, h)| h)
        .unwrap_or_else(|_| key.to_owned());
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        _ => host,
    }
}

/// Credentials for `registry` from the auth file, if it exists and has some.
pub fn file_credentials(
    auth_file: &Path,
    registry: &str,
) -> Result<Option<Credentials>, HostsError> {
    let err = |message: String| HostsError {
        path: auth_file.display().to_string(),
        message,
    };
    let text = match fs::read_to_string(auth_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    let cfg: DockerConfig =
        serde_json::from_str(&text).map_err(|e| err(format!("not a Docker config.json: {e}")))?;
    for (key, fields) in &cfg.auths {
        if auth_key(key) == registry {
            return fields
                .credentials()
                .map_err(|m| err(format!("entry {key:?}: {m}")));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "example.com:443",
            "[fd00::1]:5000",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn no_config_means_the_registry_itself() {
        let dir = tempfile::tempdir().unwrap();
        let e = endpoints(dir.path(), "docker.io").unwrap();
        assert_eq!(e, vec![default_upstream("docker.io")]);
        assert!(!e[0].plain_http);
        let e = endpoints(dir.path(), "127.0.0.1:5000").unwrap();
        assert!(e[0].plain_http, "loopback is plain HTTP");
    }

    #[test]
    fn mirrors_in_order_then_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("docker.io");
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join("hosts.toml"),
            r#"
server = "https://registry-1.docker.io"
[host."http://10.0.0.9:5000"]
  capabilities = ["pull", "resolve"]
[host."https://m2.example"]
  capabilities = ["pull"]
  skip_verify = true
[host."https://push-only.example"]
  capabilities = ["push"]
"#,
        )
        .unwrap();
        let e = endpoints(dir.path(), "docker.io").unwrap();
        let hosts: Vec<_> = e.iter().map(|e| e.host.as_str()).collect();
        assert_eq!(hosts, ["10.0.0.9:5000", "m2.example", "docker.io"]);
        assert!(e[0].plain_http && e[0].resolve && e[0].mirror);
        assert!(!e[1].plain_http && !e[1].resolve && e[1].skip_verify);
        assert!(!e[2].mirror);
    }

    #[test]
    fn server_pointing_at_the_mirror_means_no_other_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("_default");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("hosts.toml"), "server = \"http://10.1.1.1:5000\"\n").unwrap();
        let e = endpoints(dir.path(), "quay.io").unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].host.as_str(), e[0].plain_http),
            ("10.1.1.1:5000", true)
        );
    }

    #[test]
    fn keys_berth_cannot_honour_are_refused_naming_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("quay.io");
        fs::create_dir_all(&d).unwrap();
        for (text, want) in [
            ("ca = \"/etc/ca.pem\"\n", "key `ca` is not supported"),
            (
                "[host.\"https://m.example\"]\nheader = { X = \"1\" }\n",
                "host \"https://m.example\": key `header`",
            ),
            (
                "[host.\"https://m.example\"]\noverride_path = true\n",
                "key `override_path`",
            ),
            (
                "[host.\"https://m.example\"]\nclient = [\"/c.pem\", \"/k.pem\"]\n",
                "key `client`",
            ),
            ("servr = \"https://x\"\n", "unknown field `servr`"),
            (
                "[host.\"https://m.example\"]\nskip_verfy = true\n",
                "unknown field `skip_verfy`",
            ),
            (
                "[host.\"https://m.example/mirror/path\"]\n",
                "a path in a host URL",
            ),
        ] {
            fs::write(d.join("hosts.toml"), text).unwrap();
            let e = endpoints(dir.path(), "quay.io").unwrap_err().to_string();
            assert!(e.contains("quay.io/hosts.toml"), "{e}");
            assert!(e.contains(want), "{text:?}: {e}");
        }
        // containerd's mirror URLs may end in /v2: that is the API root.
        fs::write(d.join("hosts.toml"), "[host.\"https://m.example/v2\"]\n").unwrap();
        assert_eq!(
            endpoints(dir.path(), "quay.io").unwrap()[0].host,
            "m.example"
        );
        // Top-level capabilities are the upstream's.
        fs::write(
            d.join("hosts.toml"),
            "capabilities = [\"resolve\"]\n[host.\"http://10.0.0.9:5000\"]\n",
        )
        .unwrap();
        let e = endpoints(dir.path(), "quay.io").unwrap();
        assert_eq!(e.len(), 1, "only the mirror pulls: {e:?}");
        fs::write(d.join("hosts.toml"), "capabilities = [\"resolve\"]\n").unwrap();
        assert!(endpoints(dir.path(), "quay.io").is_err());
        // Another registry's file is unaffected by this one.
        assert_eq!(endpoints(dir.path(), "ghcr.io").unwrap().len(), 1);
    }

    #[test]
    fn broken_hosts_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("quay.io");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("hosts.toml"), "server = [").unwrap();
        let e = endpoints(dir.path(), "quay.io").unwrap_err();
        assert!(e.to_string().contains("quay.io/hosts.toml"), "{e}");
    }

    #[test]
    fn credentials_from_every_field() {
        let f = |json: &str| -> Option<Credentials> {
            serde_json::from_str::<AuthFields>(json)
                .unwrap()
                .credentials()
                .unwrap()
        };
        assert_eq!(
            f(r#"{"username":"u","password":"p"}"#),
            Some(Credentials::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        assert_eq!(
            f(r#"{"auth":"dTpwOng="}"#),
            Some(Credentials::Basic {
                username: "u".into(),
                password: "p:x".into()
            })
        );
        assert_eq!(
            f(r#"{"registrytoken":"t"}"#),
            Some(Credentials::Bearer("t".into()))
        );
        assert!(matches!(
            f(r#"{"identitytoken":"i"}"#),
            Some(Credentials::Basic { .. })
        ));
        assert_eq!(f("{}"), None);
        let bad: AuthFields = serde_json::from_str(r#"{"auth":"!!"}"#).unwrap();
        assert!(bad.credentials().is_err());
        let dbg = format!("{:?}", f(r#"{"username":"u","password":"secret"}"#));
        assert!(!dbg.contains("secret"), "{dbg}");
    }

    #[test]
    fn auth_file_keys_are_normalized() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth.json");
        fs::write(
            &p,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"},"127.0.0.1:5000":{"username":"a","password":"b"}}}"#,
        )
        .unwrap();
        assert!(matches!(
            file_credentials(&p, "docker.io").unwrap(),
            Some(Credentials::Basic { .. })
        ));
        assert!(file_credentials(&p, "127.0.0.1:5000").unwrap().is_some());
        assert!(file_credentials(&p, "quay.io").unwrap().is_none());
        assert!(
            file_credentials(&dir.path().join("none"), "x")
                .unwrap()
                .is_none()
        );
    }
}
