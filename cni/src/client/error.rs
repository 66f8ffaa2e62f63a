//! What can go wrong while driving CNI plugins.

use std::path::PathBuf;
use std::time::Duration;

/// Why a CNI operation failed. Messages name the network, plugin and CNI
/// command involved; they never include the network configuration itself
/// (which may hold credentials for an IPAM or a policy backend).
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The attachment cannot be used as given (bad container id or ifname).
    #[error("invalid CNI attachment: {field}: {reason}")]
    InvalidAttachment { field: &'static str, reason: String },
    /// No usable network configuration list in the conf dir.
    #[error("no CNI network config: {0}")]
    NoNetwork(String),
    /// A plugin the network names is in none of the bin dirs.
    #[error("CNI plugin {plugin:?} of network {network:?} not found in {}", .dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "))]
    PluginNotFound {
        network: String,
        plugin: String,
        dirs: Vec<PathBuf>,
    },
    /// The plugin binary could not be started.
    #[error("cannot run CNI plugin {plugin:?} ({command}): {source}")]
    Spawn {
        plugin: String,
        command: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The plugin reported a CNI error object.
    #[error("CNI plugin {plugin:?} failed {command} (code {code}): {msg}{}", if .details.is_empty() { String::new() } else { format!(" ({})", .details) })]
    Plugin {
        plugin: String,
        command: &'static str,
        /// The CNI error code (1-99 are the spec's, >= 100 the plugin's).
        code: u32,
        msg: String,
        details: String,
    },
    /// The plugin failed without a CNI error object on stdout.
    #[error("CNI plugin {plugin:?} failed {command} ({status}) without an error object{}", if .stderr.is_empty() { String::new() } else { format!(": {}", .stderr) })]
    PluginFailed {
        plugin: String,
        command: &'static str,
        /// How it ended (exit code or signal).
        status: String,
        /// The tail of its stderr.
        stderr: String,
    },
    /// The plugin did not finish in time; it and its process group were
    /// killed and reaped.
    #[error("CNI plugin {plugin:?} timed out after {timeout:?} ({command}); killed")]
    Timeout {
        plugin: String,
        command: &'static str,
        timeout: Duration,
    },
    /// The plugin's output is not a result this client understands.
    #[error("CNI plugin {plugin:?} returned a bad {command} result: {reason}")]
    BadResult {
        plugin: String,
        command: &'static str,
        reason: String,
    },
    /// CHECK needs the cached ADD result, and there is none.
    #[error("no cached CNI result for container {container_id:?} interface {ifname:?}")]
    NotAttached {
        container_id: String,
        ifname: String,
    },
    /// The network's cniVersion does not allow the command.
    #[error("CNI network {network:?} (cniVersion {version}) does not support {command}")]
    Unsupported {
        network: String,
        version: String,
        command: &'static str,
    },
    /// Reading or writing the result cache failed.
    #[error("CNI result cache {}: {source}", .path.display())]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A cache file exists but cannot be used.
    #[error("CNI result cache {} is corrupt: {reason}", .path.display())]
    BadCache { path: PathBuf, reason: String },
    /// Bringing up `lo` in a network namespace failed.
    #[error("cannot bring up lo in {}: {reason}", .netns.display())]
    Loopback { netns: PathBuf, reason: String },
    /// GC found several problems; each is listed.
    #[error("CNI GC: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Multiple(Vec<CniError>),
}

impl CniError {
    /// The CNI error code when a plugin reported one.
    pub fn cni_code(&self) -> Option<u32> {
        match self {
            CniError::Plugin { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether a plugin ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, CniError::Timeout { .. })
    }
}
