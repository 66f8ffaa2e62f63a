//! Pod errors; `berth-cri` maps them to gRPC codes.

use crate::ns::NsError;

/// Why the pod network ([`crate::PodNetwork`]) failed, in the terms a
/// client can act on; the implementation's own error is the source.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The node has no usable network yet (no config, a plugin missing):
    /// kubelet waits for NetworkReady.
    #[error("{0}")]
    NotReady(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The pod's network settings cannot be used.
    #[error("{0}")]
    Invalid(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The network plugin failed.
    #[error("{0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// The request is malformed (missing metadata, bad sysctl, DNS, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// A sandbox with this (name, uid, namespace, attempt) exists.
    #[error("pod sandbox {name:?} is reserved for sandbox {id}")]
    AlreadyExists { name: String, id: String },
    #[error("pod sandbox {0} not found")]
    NotFound(String),
    /// Another pod holds one of the host ports this pod asks for.
    #[error("{0}")]
    PortInUse(String),
    /// The pod network could not attach or detach the pod.
    #[error("pod network: {0}")]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Namespaces(#[from] NsError),
    #[error("pod cgroup {path}: {source}")]
    Cgroup {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("pod files: {0}")]
    Files(#[source] std::io::Error),
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
}
