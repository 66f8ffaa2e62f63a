//! Which CRI endpoint to talk to: `--runtime-endpoint`, else
//! `$BERTH_RUNTIME_ENDPOINT`, else `runtime-endpoint` in crictl's config
//! file (`/etc/crictl.yaml`), else berth's default socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_ENDPOINT: &str = "unix:///run/berth/berth.sock";
pub const ENV_ENDPOINT: &str = "BERTH_RUNTIME_ENDPOINT";
pub const CRICTL_CONFIG: &str = "/etc/crictl.yaml";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EndpointError {
    #[error(
        "endpoint {0:?} is not supported: berth talks to unix sockets (unix:///path/to/socket)"
    )]
    Unsupported(String),
    #[error("cannot read {path}: {message}")]
    CrictlConfig { path: PathBuf, message: String },
}

/// Where the endpoint came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    CrictlConfig,
    Default,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The endpoint as written (`unix:///run/berth/berth.sock`).
    pub endpoint: String,
    pub socket: PathBuf,
    pub source: Source,
    /// crictl config's `timeout`, if set.
    pub timeout: Option<Duration>,
}

/// `unix:///path`, `unix:/path` or a bare absolute path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, EndpointError> {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(EndpointError::Unsupported(endpoint.to_owned()))
    }
}

#[derive(Debug, Default, serde::Deserialize)]
struct CrictlConfig {
    #[serde(rename = "runtime-endpoint", default)]
    runtime_endpoint: Option<String>,
    #[serde(default)]
    timeout: Option<u64>,
}

fn read_crictl(path: &Path) -> Result<Option<CrictlConfig>, EndpointError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(EndpointError::CrictlConfig {
                path: path.to_owned(),
                message: e.to_string(),
            });
        }
    };
    if text.trim().is_empty() {
        return Ok(Some(CrictlConfig::default()));
    }
    serde_yaml_ng::from_str(&text)
        .map(Some)
        .map_err(|e| EndpointError::CrictlConfig {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

pub fn resolve(
    flag: Option<&str>,
    env: Option<&str>,
    crictl_config: &Path,
) -> Result<Resolved, EndpointError> {
    let crictl = read_crictl(crictl_config)?;
    let timeout = crictl
        .as_ref()
        .and_then(|c| c.timeout)
        .filter(|t| *t > 0)
        .map(Duration::from_secs);
    let (endpoint, source) = if let Some(f) = flag.filter(|s| !s.is_empty()) {
        (f.to_owned(), Source::Flag)
    } else if let Some(e) = env.filter(|s| !s.is_empty()) {
        (e.to_owned(), Source::Env)
    } else if let Some(c) = crictl
        .and_then(|c| c.runtime_endpoint)
        .filter(|s| !s.is_empty())
    {
        (c, Source::CrictlConfig)
    } else {
        (DEFAULT_ENDPOINT.to_owned(), Source::Default)
    };
    Ok(Resolved {
        socket: socket_path(&endpoint)?,
        endpoint,
        source,
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_forms() {
        assert_eq!(
            socket_path("unix:///a/b.sock").unwrap(),
            PathBuf::from("/a/b.sock")
        );
        assert_eq!(
            socket_path("unix:/a/b.sock").unwrap(),
            PathBuf::from("/a/b.sock")
        );
        assert_eq!(
            socket_path("/a/b.sock").unwrap(),
            PathBuf::from("/a/b.sock")
        );
        assert!(socket_path("tcp://127.0.0.1:10010").is_err());
        assert!(socket_path("relative.sock").is_err());
    }

    #[test]
    fn precedence_flag_env_crictl_default() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("crictl.yaml");
        let none = dir.path().join("missing.yaml");
        std::fs::write(
            &cfg,
            "runtime-endpoint: unix:///from/crictl.sock\nimage-endpoint: unix:///x\ntimeout: 7\ndebug: false\n",
        )
        .unwrap();
        let r = resolve(Some("unix:///flag.sock"), Some("/env.sock"), &cfg).unwrap();
        assert_eq!(
            (r.socket.to_str().unwrap(), r.source),
            ("/flag.sock", Source::Flag)
        );
        assert_eq!(r.timeout, Some(Duration::from_secs(7)));
        let r = resolve(None, Some("/env.sock"), &cfg).unwrap();
        assert_eq!(
            (r.socket.to_str().unwrap(), r.source),
            ("/env.sock", Source::Env)
        );
        let r = resolve(None, None, &cfg).unwrap();
        assert_eq!(
            (r.socket.to_str().unwrap(), r.source),
            ("/from/crictl.sock", Source::CrictlConfig)
        );
        let r = resolve(None, None, &none).unwrap();
        assert_eq!(
            (r.socket.to_str().unwrap(), r.source, r.timeout),
            ("/run/berth/berth.sock", Source::Default, None)
        );
    }

    #[test]
    fn broken_crictl_config_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("crictl.yaml");
        std::fs::write(&cfg, "runtime-endpoint: [unclosed\n").unwrap();
        let e = resolve(None, None, &cfg).unwrap_err();
        assert!(e.to_string().contains("crictl.yaml"), "{e}");
    }
}
