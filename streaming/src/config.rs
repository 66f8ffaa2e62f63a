//! `[streaming]`: where the streaming server listens and how long what it
//! issues lives.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The streaming server's settings (berthd's `[streaming]` section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The address the server binds and names in the URLs it issues.
    /// 127.0.0.1 serves a kubelet on the same node (kubelet proxies the
    /// API server's streams to it); a node whose kubelet reaches the
    /// runtime from elsewhere needs a routable address.
    pub address: IpAddr,
    /// The TCP port; 0 takes a free one, announced in every URL.
    pub port: u16,
    /// A PEM certificate chain: with `tls_key`, the server speaks HTTPS
    /// and its URLs say `https` (clients must trust the certificate).
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// How long a URL from Exec, Attach or PortForward can be used (once).
    #[serde(with = "humantime_serde")]
    pub url_ttl: Duration,
    /// A session with no data in either direction for this long is closed
    /// (kubelet's `--streaming-connection-idle-timeout`, 4h by default).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Sessions served at once; more connections wait in the listen
    /// backlog, so a flood cannot exhaust berthd's descriptors.
    pub max_sessions: usize,
    /// URLs issued and not yet used; a call beyond it fails with
    /// ResourceExhausted (kubelet's own cache holds 1000).
    pub max_pending_urls: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            tls_cert: None,
            tls_key: None,
            url_ttl: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(4 * 3600),
            max_sessions: 256,
            max_pending_urls: 1000,
        }
    }
}

impl Config {
    /// Checks what serde cannot: `(key, message)` of the first problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err((
                "tls_cert".into(),
                "tls_cert and tls_key go together: set both or neither".into(),
            ));
        }
        if self.url_ttl < Duration::from_secs(1) {
            return Err(("url_ttl".into(), "must be at least 1s".into()));
        }
        if self.idle_timeout < Duration::from_secs(1) {
            return Err(("idle_timeout".into(), "must be at least 1s".into()));
        }
        for (key, v) in [
            ("max_sessions", self.max_sessions),
            ("max_pending_urls", self.max_pending_urls),
        ] {
            if v == 0 {
                return Err((key.into(), "must be at least 1".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_limits_are_checked() {
        assert_eq!(Config::default().validate(), Ok(()));
        let c = Config {
            tls_cert: Some("/etc/berth/tls.crt".into()),
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "tls_cert");
        let c = Config {
            max_sessions: 0,
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "max_sessions");
    }
}
