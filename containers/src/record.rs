//! What berth records about a container (table `containers`), and the
//! name reservations kubelet relies on (table `container_names`).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_store::Table;
use k8s_cri::v1::ContainerConfig;
use prost::Message;
use serde::{Deserialize, Serialize};

pub const CONTAINERS: Table<ContainerRecord> = Table::new("containers");
/// Reservation key (name, pod name, namespace, uid, attempt) → container id.
pub const CONTAINER_NAMES: Table<String> = Table::new("container_names");
/// Removed containers whose runtime state and files are still being
/// deleted (in the background after RemoveContainer; finished at the next
/// start after a crash): id → the record as it was removed.
pub const CONTAINER_REMOVALS: Table<ContainerRecord> = Table::new("container_removals");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Being created; a crash here is unwound at the next start.
    Creating,
    Created,
    Running,
    Exited,
    /// Its shim vanished without recording how it ended.
    Unknown,
}

/// The image a container runs, as ImageService reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// The image as the request named it.
    pub requested: String,
    /// The image id (config digest): ContainerStatus.image_id.
    pub id: String,
    /// A repo digest (name@sha256:…) when known, else the id:
    /// ContainerStatus.image_ref.
    pub repo_digest: String,
    /// A repo tag when known (ContainerStatus.image.image).
    pub repo_tag: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub pod_id: String,
    pub state: State,
    /// The CRI ContainerConfig as received (protobuf, base64), with
    /// resources replaced by UpdateContainerResources. Set with
    /// [`set_config`](Self::set_config), read with
    /// [`config`](Self::config).
    pub(crate) config: String,
    /// `config` decoded, once per record (records are shared by the
    /// store's cache, so ListContainers decodes each config once).
    #[serde(skip)]
    pub(crate) decoded: DecodedConfig,
    pub image: ImageRef,
    /// Absolute path of the CRI log, when the container has one.
    pub log_path: Option<PathBuf>,
    /// RuntimeClass handler that runs it.
    pub handler: String,
    /// Its cgroup (relative to the cgroup root, or a systemd
    /// `slice:prefix:name` path).
    pub cgroups_path: String,
    pub stop_signal: i32,
    pub pid: u32,
    /// Nanoseconds since the epoch; 0 = not yet.
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled` or empty.
    pub reason: String,
    pub message: String,
    /// The user its process runs as, resolved at create.
    #[serde(default)]
    pub user: Option<User>,
    /// Its runtime state is deleted and its rootfs unmounted (done as soon
    /// as it exits, so RemoveContainer only deletes files and the record).
    #[serde(default)]
    pub released: bool,
}

/// uid, gid and additional gids of a container's process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// The decoded CRI config of a record: a cache, not part of its value
/// (equal whatever it holds).
#[derive(Debug, Clone, Default)]
pub(crate) struct DecodedConfig(OnceLock<Arc<ContainerConfig>>);

impl PartialEq for DecodedConfig {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl ContainerRecord {
    pub fn config(&self) -> Arc<ContainerConfig> {
        self.decoded
            .0
            .get_or_init(|| {
                Arc::new(
                    STANDARD
                        .decode(&self.config)
                        .ok()
                        .and_then(|b| ContainerConfig::decode(b.as_slice()).ok())
                        .unwrap_or_default(),
                )
            })
            .clone()
    }

    pub fn set_config(&mut self, c: &ContainerConfig) {
        self.config = STANDARD.encode(c.encode_to_vec());
        self.decoded = DecodedConfig::default();
    }

    /// The holder of its image lease ([`lease_holder`]).
    pub fn lease_holder(&self) -> String {
        format!("{LEASE_PREFIX}{}", self.reservation_key())
    }

    /// The key of its name reservation (table `container_names`).
    pub fn reservation_key(&self) -> String {
        let cfg = self.config();
        let (name, attempt) = cfg
            .metadata
            .as_ref()
            .map(|m| (m.name.as_str(), m.attempt))
            .unwrap_or(("", 0));
        reservation_key(name, attempt, &self.pod_id)
    }

    pub fn name(&self) -> String {
        self.config()
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default()
    }
}

/// The reservation key of a container name in its pod.
pub fn reservation_key(name: &str, attempt: u32, pod_id: &str) -> String {
    format!("{name}_{pod_id}_{attempt}")
}

/// What the image leases of containers are held under: the name
/// reservation, known before the container's id, so the lease exists
/// before the rootfs does.
pub const LEASE_PREFIX: &str = "container:";

/// The image lease holder of the container `name` (attempt) of a pod.
pub fn lease_holder(name: &str, attempt: u32, pod_id: &str) -> String {
    format!("{LEASE_PREFIX}{}", reservation_key(name, attempt, pod_id))
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub fn record() -> ContainerRecord {
        ContainerRecord {
            id: "c".into(),
            pod_id: "p".into(),
            state: State::Created,
            config: String::new(),
            decoded: Default::default(),
            image: ImageRef {
                requested: "busybox".into(),
                id: "sha256:x".into(),
                repo_digest: "sha256:x".into(),
                repo_tag: String::new(),
            },
            log_path: None,
            handler: "berth".into(),
            cgroups_path: "/berth/p/c".into(),
            stop_signal: 15,
            pid: 0,
            created_at: 1,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            user: None,
            released: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::ContainerMetadata;

    #[test]
    fn config_round_trips() {
        let c = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "web".into(),
                attempt: 2,
            }),
            command: vec!["httpd".into()],
            ..Default::default()
        };
        let mut r = tests_support::record();
        r.set_config(&c);
        let json = serde_json::to_string(&r).unwrap();
        let back: ContainerRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(*back.config(), c);
        assert_eq!(back.name(), "web");
    }
}
