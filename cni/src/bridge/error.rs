//! The plugin's error type and its mapping onto CNI error codes.

use std::path::PathBuf;
use std::time::Duration;

use rscni_types::error::Error as CniError;

/// CNI code for an exhausted address pool (plugin-specific range, >= 100).
pub const CODE_POOL_EXHAUSTED: u32 = 100;
/// CNI code for a failed link/address/route operation.
pub const CODE_NETLINK: u32 = 101;
/// CNI code for a failed nftables operation.
pub const CODE_NFTABLES: u32 = 102;
/// CNI code for CHECK finding the attachment not as ADD left it.
pub const CODE_CHECK_FAILED: u32 = 103;
/// CNI code for an interface name taken by something berth-bridge does not own.
pub const CODE_CONFLICT: u32 = 104;
/// CNI code for traffic shaping (qdiscs, filters, the ifb device) that
/// could not be set up, e.g. a kernel without ifb.
pub const CODE_SHAPING: u32 = 105;

/// Everything that can go wrong in berth-bridge.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The network configuration is unusable (CNI code 7).
    #[error("{0}")]
    Config(String),
    /// A required environment value is missing or malformed (CNI code 4).
    #[error("{0}")]
    Env(String),
    /// The network namespace does not exist (CNI code 3).
    #[error("network namespace {path}: {source}")]
    NetnsMissing {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// File or sysctl I/O failed (CNI code 5).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Another ADD/DEL held the network's IPAM lock too long (CNI code 11).
    #[error("timed out after {timeout:?} waiting for the IPAM lock {path}")]
    LockTimeout { timeout: Duration, path: PathBuf },
    /// No free address is left in a subnet.
    #[error("no free address left in {0}")]
    PoolExhausted(String),
    /// A netlink (link, address, route) operation failed.
    #[error("{what}: {message}")]
    Netlink { what: String, message: String },
    /// An nftables operation failed.
    #[error("nftables: {0}")]
    Nft(String),
    /// An interface name is taken by something that is not ours.
    #[error("{0}")]
    Conflict(String),
    /// CHECK found the attachment not as ADD left it.
    #[error("{0}")]
    Check(String),
    /// Traffic shaping (capability `bandwidth`) could not be set up.
    #[error("traffic shaping: {0}")]
    Shaping(String),
    /// STATUS: the plugin cannot serve ADD (CNI code 50).
    #[error("{0}")]
    NotReady(String),
}

impl BridgeError {
    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    /// A netlink failure with what was being done.
    pub fn netlink(what: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Self::Netlink {
            what: what.into(),
            message: err.to_string(),
        }
    }

    /// The CNI error code this error is reported with.
    pub fn code(&self) -> u32 {
        u32::from(&CniError::from(self))
    }
}

impl From<&BridgeError> for CniError {
    fn from(err: &BridgeError) -> Self {
        let details = err.to_string();
        match err {
            BridgeError::Config(_) => CniError::InvalidNetworkConfig(details),
            BridgeError::Env(_) => CniError::InvalidEnvValue(details),
            BridgeError::NetnsMissing { .. } => CniError::NotExist(details),
            BridgeError::Io { .. } => CniError::IOFailure(details),
            BridgeError::LockTimeout { .. } => CniError::TryAgainLater(details),
            BridgeError::NotReady(_) => CniError::PluginNotAvailable(details),
            BridgeError::PoolExhausted(_) => CniError::Custom(
                CODE_POOL_EXHAUSTED,
                "Address pool exhausted".into(),
                details,
            ),
            BridgeError::Netlink { .. } => {
                CniError::Custom(CODE_NETLINK, "Netlink operation failed".into(), details)
            }
            BridgeError::Nft(_) => {
                CniError::Custom(CODE_NFTABLES, "nftables operation failed".into(), details)
            }
            BridgeError::Check(_) => CniError::Custom(
                CODE_CHECK_FAILED,
                "Attachment is not as configured".into(),
                details,
            ),
            BridgeError::Conflict(_) => {
                CniError::Custom(CODE_CONFLICT, "Interface conflict".into(), details)
            }
            BridgeError::Shaping(_) => {
                CniError::Custom(CODE_SHAPING, "Traffic shaping failed".into(), details)
            }
        }
    }
}

impl From<BridgeError> for CniError {
    fn from(err: BridgeError) -> Self {
        Self::from(&err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_spec() {
        assert_eq!(BridgeError::Config("x".into()).code(), 7);
        assert_eq!(BridgeError::Env("x".into()).code(), 4);
        assert_eq!(
            BridgeError::LockTimeout {
                timeout: Duration::from_secs(1),
                path: "/x".into()
            }
            .code(),
            11
        );
        assert_eq!(BridgeError::NotReady("x".into()).code(), 50);
        assert_eq!(BridgeError::PoolExhausted("x".into()).code(), 100);
        assert_eq!(BridgeError::Shaping("x".into()).code(), 105);
        assert_eq!(
            BridgeError::io("read", std::io::Error::other("boom")).code(),
            5
        );
    }
}
