//! berth's CNI side: finding and validating the node's network configuration
//! (this module tree), and later invoking plugins and berth's own
//! `berth-bridge` plugin.
//!
//! What is here now is what `Status` needs to report `NetworkReady` the way
//! kubelet expects: the first valid network configuration list in the conf
//! dir, with every plugin it names present in a bin dir.

pub mod bridge;
pub mod client;
mod config;
mod netconf;
mod watch;

pub use config::Config;
pub use netconf::{
    NetConfError, NetworkConfigList, NetworkStatus, PluginConf, SUPPORTED_VERSIONS, find_plugin,
    load_network,
};
pub use watch::NetworkWatch;
