//! Registry credentials: from the PullImage request (kubelet's pull
//! secrets), else from the auth file in Docker's `config.json` format:
//!
//! ```json
//! {
//!   "auths": {"registry.example": {"auth": "<base64 user:password>"}},
//!   "credHelpers": {"123.dkr.ecr.example": "ecr-login"},
//!   "credsStore": "pass"
//! }
//! ```
//!
//! As Docker looks them up: the registry's `credHelpers` entry, else
//! `credsStore`, names a credential helper (`docker-credential-<name>`,
//! found in berthd's PATH and run by `credhelper.rs`); a helper that
//! has nothing for the registry leaves the `auths` entry, if any. Secrets
//! are never logged nor put in error messages: `Debug` redacts them.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::hosts::HostsError;

/// Credentials for one registry. `Debug` never prints secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    /// An identity token (Docker's `identitytoken`, a credential helper's
    /// `<token>` user): a refresh token traded at the registry's token
    /// endpoint (OAuth2 `refresh_token` grant), as containerd does.
    IdentityToken(String),
    /// A registry (bearer) token used as is.
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

impl Credentials {
    /// A digest of the credentials, to key caches without keeping a
    /// second copy of the secret around.
    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        match self {
            Credentials::Basic { username, password } => {
                h.update(b"basic\0");
                h.update(username.as_bytes());
                h.update(b"\0");
                h.update(password.as_bytes());
            }
            Credentials::IdentityToken(t) => {
                h.update(b"identity\0");
                h.update(t.as_bytes());
            }
            Credentials::Bearer(t) => {
                h.update(b"bearer\0");
                h.update(t.as_bytes());
            }
        }
        h.finalize().into()
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
            return Ok(Some(Credentials::IdentityToken(
                self.identity_token.clone(),
            )));
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
    auths: BTreeMap<String, AuthFields>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: String,
}

/// `https://index.docker.io/v1/` → `docker.io`; `host:port/path` → `host:port`.
fn auth_key(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        _ => host.to_owned(),
    }
}

/// The server URL Docker hands a credential helper for `registry`.
pub fn helper_server_url(registry: &str) -> String {
    if registry == "docker.io" {
        "https://index.docker.io/v1/".into()
    } else {
        registry.to_owned()
    }
}

/// What the auth file says about one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileAuth {
    /// Nothing: pull anonymously.
    None,
    /// Credentials written in `auths`.
    Static(Credentials),
    /// Ask this credential helper; `fallback` is the `auths` entry.
    Helper {
        /// `<name>` of `docker-credential-<name>`.
        name: String,
        /// `credHelpers` or `credsStore`: where the name came from.
        key: &'static str,
        fallback: Option<Credentials>,
    },
}

/// Reads what the auth file has for `registry`, running nothing. A
/// missing file means no credentials.
pub fn file_auth(auth_file: &Path, registry: &str) -> Result<FileAuth, HostsError> {
    let err = |message: String| HostsError {
        path: auth_file.display().to_string(),
        message,
    };
    let text = match fs::read_to_string(auth_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileAuth::None),
        Err(e) => return Err(err(e.to_string())),
    };
    // serde_json's message may quote a value: say where, never what.
    let cfg: DockerConfig = serde_json::from_str(&text).map_err(|e| {
        err(format!(
            "not a Docker config.json (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let mut fallback = None;
    for (key, fields) in &cfg.auths {
        if auth_key(key) == registry {
            fallback = fields
                .credentials()
                .map_err(|m| err(format!("auths entry {key:?}: {m}")))?;
            break;
        }
    }
    let helper = cfg
        .cred_helpers
        .iter()
        .find(|(k, _)| auth_key(k) == registry)
        .map(|(_, name)| (name.clone(), "credHelpers"))
        .or_else(|| (!cfg.creds_store.is_empty()).then(|| (cfg.creds_store.clone(), "credsStore")));
    if let Some((name, key)) = helper {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !name.starts_with('.');
        if !valid {
            return Err(err(format!(
                "{key}: {name:?} is not a credential helper name (letters, digits, '-', '_', '.')"
            )));
        }
        return Ok(FileAuth::Helper {
            name,
            key,
            fallback,
        });
    }
    Ok(fallback.map_or(FileAuth::None, FileAuth::Static))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            f(r#"{"identitytoken":"i"}"#),
            Some(Credentials::IdentityToken("i".into()))
        );
        assert_eq!(f("{}"), None);
        let bad: AuthFields = serde_json::from_str(r#"{"auth":"!!"}"#).unwrap();
        assert!(bad.credentials().is_err());
        for json in [
            r#"{"username":"u","password":"secret"}"#,
            r#"{"identitytoken":"secret"}"#,
            r#"{"registrytoken":"secret"}"#,
        ] {
            let dbg = format!("{:?}", f(json));
            assert!(!dbg.contains("secret"), "{dbg}");
        }
    }

    #[test]
    fn fingerprints_tell_credentials_apart() {
        let basic = |u: &str, p: &str| Credentials::Basic {
            username: u.into(),
            password: p.into(),
        };
        let all = [
            basic("a", "b"),
            basic("a", "c"),
            basic("ab", ""),
            Credentials::IdentityToken("b".into()),
            Credentials::Bearer("b".into()),
        ];
        for (i, x) in all.iter().enumerate() {
            for (j, y) in all.iter().enumerate() {
                assert_eq!(x.fingerprint() == y.fingerprint(), i == j, "{x:?} {y:?}");
            }
        }
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
            file_auth(&p, "docker.io").unwrap(),
            FileAuth::Static(Credentials::Basic { .. })
        ));
        assert!(matches!(
            file_auth(&p, "127.0.0.1:5000").unwrap(),
            FileAuth::Static(_)
        ));
        assert_eq!(file_auth(&p, "quay.io").unwrap(), FileAuth::None);
        assert_eq!(
            file_auth(&dir.path().join("none"), "x").unwrap(),
            FileAuth::None
        );
    }

    #[test]
    fn helpers_per_registry_then_the_default_store() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth.json");
        fs::write(
            &p,
            r#"{
              "auths": {"quay.io": {"auth": "dTpw"}, "ghcr.io": {}},
              "credHelpers": {"quay.io": "quayhelper", "https://index.docker.io/v1/": "hub"},
              "credsStore": "desktop",
              "currentContext": "default"
            }"#,
        )
        .unwrap();
        let helper = |r: &str| match file_auth(&p, r).unwrap() {
            FileAuth::Helper {
                name,
                key,
                fallback,
            } => (name, key, fallback.is_some()),
            other => panic!("{r}: {other:?}"),
        };
        assert_eq!(
            helper("quay.io"),
            ("quayhelper".into(), "credHelpers", true)
        );
        assert_eq!(helper("docker.io"), ("hub".into(), "credHelpers", false));
        assert_eq!(helper("ghcr.io"), ("desktop".into(), "credsStore", false));
        assert_eq!(
            helper_server_url("docker.io"),
            "https://index.docker.io/v1/"
        );
        assert_eq!(helper_server_url("quay.io"), "quay.io");
    }

    #[test]
    fn bad_auth_files_name_the_file_and_never_quote_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth.json");
        for (text, want) in [
            (
                r#"{"auths": {"quay.io": "s3cret-value"}}"#,
                "not a Docker config.json",
            ),
            (
                r#"{"auths": {"quay.io": {"auth": "!!"}}}"#,
                "auths entry \"quay.io\"",
            ),
            (
                r#"{"credHelpers": {"quay.io": "../../bin/sh"}}"#,
                "not a credential helper name",
            ),
            (r#"{"credsStore": "a b"}"#, "credsStore"),
            ("s3cret-value", "line 1"),
        ] {
            fs::write(&p, text).unwrap();
            let e = file_auth(&p, "quay.io").unwrap_err().to_string();
            assert!(e.contains("auth.json") && e.contains(want), "{text}: {e}");
            assert!(!e.contains("s3cret-value"), "{e}");
        }
    }
}
