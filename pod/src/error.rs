//! Pod errors; `berth-cri` maps them to gRPC codes.

use crate::ns::NsError;

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
    /// The network plugin failed (its message included).
    #[error("pod network: {0}")]
    Network(String),
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
