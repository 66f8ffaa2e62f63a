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
