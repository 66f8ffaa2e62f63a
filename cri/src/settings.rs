//! Runtime-wide settings kubelet pushes with `UpdateRuntimeConfig`, kept in
//! the store so they survive restarts (kubelet sends them once at start).

use std::str::FromStr;

use berth_store::{Store, StoreError, Table};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The node's pod network ranges, as kubelet last sent them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkSettings {
    /// One CIDR, or an IPv4 and an IPv6 one for dual stack.
    #[serde(default)]
    pub pod_cidrs: Vec<IpNet>,
}

const SETTINGS: Table<NetworkSettings> = Table::new("runtime_settings");
const NETWORK_KEY: &str = "network";

impl NetworkSettings {
    pub fn load(store: &Store) -> Result<NetworkSettings, StoreError> {
        Ok(store.get(&SETTINGS, NETWORK_KEY)?.unwrap_or_default())
    }

    pub fn save(&self, store: &Store) -> Result<(), StoreError> {
        store.put(&SETTINGS, NETWORK_KEY, self)
    }

    /// Parses kubelet's `pod_cidr`: one CIDR or a comma-separated pair.
    pub fn parse_pod_cidr(s: &str) -> Result<Vec<IpNet>, String> {
        let cidrs = s
            .split(',')
            .map(str::trim)
            .map(|c| IpNet::from_str(c).map_err(|_| format!("{c:?} is not a CIDR")))
            .collect::<Result<Vec<_>, _>>()?;
        if cidrs.len() > 2 {
            return Err("at most two CIDRs (one IPv4, one IPv6) may be given".into());
        }
        if cidrs.len() == 2 && cidrs[0].addr().is_ipv4() == cidrs[1].addr().is_ipv4() {
            return Err("two CIDRs must be one IPv4 and one IPv6".into());
        }
        Ok(cidrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_dual_stack() {
        assert_eq!(
            NetworkSettings::parse_pod_cidr("10.244.1.0/24")
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            NetworkSettings::parse_pod_cidr("10.244.1.0/24, fd00:1::/64")
                .unwrap()
                .len(),
            2
        );
        for bad in ["10.244.1.0", "x", "10.0.0.0/8,10.1.0.0/16", "a/24,"] {
            assert!(NetworkSettings::parse_pod_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        let s = NetworkSettings {
            pod_cidrs: NetworkSettings::parse_pod_cidr("10.1.0.0/24").unwrap(),
        };
        s.save(&Store::open(&path).unwrap()).unwrap();
        assert_eq!(
            NetworkSettings::load(&Store::open(&path).unwrap()).unwrap(),
            s
        );
    }
}
