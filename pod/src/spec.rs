//! What a pod sandbox is asked to be, in berth's terms (the CRI layer maps
//! PodSandboxConfig onto this), and what berth records about it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
}

impl Metadata {
    /// The name reservation key: unique per (name, uid, namespace, attempt),
    /// as kubelet expects.
    pub fn reservation_key(&self) -> String {
        format!(
            "{}_{}_{}_{}",
            self.name, self.namespace, self.uid, self.attempt
        )
    }
}

/// Whose namespace a pod uses for network, PID and IPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NsMode {
    /// Its own, shared by its containers.
    #[default]
    Pod,
    /// Each container its own (only meaningful for PID).
    Container,
    /// The node's.
    Node,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NsOptions {
    pub network: NsMode,
    pub pid: NsMode,
    pub ipc: NsMode,
}

/// One range of ids of a user namespace: `length` ids from
/// `container_id` inside are `host_id`... on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

impl IdMap {
    /// The host id of `id` inside, if the range maps it.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        let off = id.checked_sub(self.container_id)?;
        if off < self.length {
            self.host_id.checked_add(off)
        } else {
            None
        }
    }

    /// The line of `/proc/<pid>/uid_map` (or `gid_map`).
    pub fn proc_line(&self) -> String {
        format!("{} {} {}\n", self.container_id, self.host_id, self.length)
    }
}

/// The pod's own user namespace (`userns_options.mode = POD`): one uid
/// and one gid range, as kubelet's allocator gives them, checked by
/// `userns::mapping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNs {
    pub uids: IdMap,
    pub gids: IdMap,
}

impl UserNs {
    /// The host uid and gid of the pod's root (id 0 inside), which owns
    /// the files berth writes for the pod.
    pub fn root(&self) -> (u32, u32) {
        (self.uids.host_id, self.gids.host_id)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub protocol: Protocol,
    pub container_port: u16,
    pub host_port: u16,
    pub host_ip: String,
}

/// A RunPodSandbox request, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub metadata: Metadata,
    pub hostname: String,
    pub log_directory: String,
    pub dns: Option<Dns>,
    pub port_mappings: Vec<PortMapping>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub cgroup_parent: String,
    pub sysctls: BTreeMap<String, String>,
    pub namespaces: NsOptions,
    /// A user namespace of the pod's own; `None`: the node's.
    #[serde(default)]
    pub userns: Option<UserNs>,
    pub runtime_handler: String,
    /// The RunPodSandbox config as berthd received it (protobuf, base64),
    /// kept for what is decided from the pod later: a container's
    /// privilege, user namespace and sysctls come from it, never from the
    /// copy a CreateContainer carries. berth-pod does not read it. Empty in
    /// records made before berth kept it.
    #[serde(default)]
    pub cri_config: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    /// Being set up; a crash here is cleaned up at the next start.
    Creating,
    Ready,
    NotReady,
}

/// Everything berth knows about a pod sandbox (table `pods`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub spec: SandboxSpec,
    pub state: SandboxState,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    /// Pinned namespaces (absent for the node's).
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    /// The pinned user namespace owning the others, when the pod has one.
    #[serde(default)]
    pub userns: Option<PathBuf>,
    /// The pod cgroup, relative to the cgroup root.
    pub cgroup: String,
    /// IPs from the network plugin: the first is the pod IP.
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    /// Directory with hostname, hosts, resolv.conf (and shm).
    pub files_dir: PathBuf,
    /// /dev/shm for the pod's containers, when IPC is the pod's.
    pub shm: Option<PathBuf>,
    /// The pid of the PID namespace holder, when the pod shares one
    /// (namespace_options.pid = POD).
    #[serde(default)]
    pub pid_holder: Option<u32>,
    /// Unwinding (a failed RunPodSandbox, or one a crash interrupted) could
    /// not undo everything: Stop and Remove do it all again.
    #[serde(default)]
    pub incomplete: bool,
}
