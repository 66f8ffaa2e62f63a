use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[image]`: pulling and storing images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Per-registry settings in containerd's `hosts.toml` layout:
    /// `<dir>/<host[:port]>/hosts.toml` (mirrors and path prefixes, plain
    /// HTTP, CAs, client certificates, headers; every containerd key), with
    /// `<dir>/_default/hosts.toml` for every other host. See
    /// [`crate::hosts`].
    pub registry_config_dir: PathBuf,
    /// Registry credentials in the Docker `config.json` format
    /// (`{"auths": {"host": {"auth": "base64(user:pass)"}}}`, and
    /// `credHelpers` / `credsStore` naming `docker-credential-<name>`
    /// helpers). Credentials sent by kubelet with PullImage take
    /// precedence. Never logged.
    pub auth_file: PathBuf,
    /// Layers of one pull fetched and unpacked at the same time.
    pub max_concurrent_downloads: usize,
    /// Images reported as pinned: kubelet's image garbage collection never
    /// removes them. References are normalized (`busybox` means
    /// `docker.io/library/busybox:latest`).
    pub pinned_images: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            registry_config_dir: PathBuf::from("/etc/berth/certs.d"),
            auth_file: PathBuf::from("/etc/berth/auth.json"),
            max_concurrent_downloads: 3,
            pinned_images: Vec::new(),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.registry_config_dir.is_absolute() {
            return Err((
                "registry_config_dir",
                format!("{:?} is not an absolute path", self.registry_config_dir),
            ));
        }
        if !self.auth_file.is_absolute() {
            return Err((
                "auth_file",
                format!("{:?} is not an absolute path", self.auth_file),
            ));
        }
        if !(1..=64).contains(&self.max_concurrent_downloads) {
            return Err((
                "max_concurrent_downloads",
                "must be between 1 and 64".into(),
            ));
        }
        for p in &self.pinned_images {
            crate::reference::ImageRef::parse(p).map_err(|e| ("pinned_images", e.to_string()))?;
        }
        Ok(())
    }
}
