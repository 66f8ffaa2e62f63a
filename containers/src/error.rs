//! Container errors; `berth-cri` maps them to gRPC codes.

use berth_shim::proto::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The request is malformed or names something unusable (bad log path,
    /// missing mount source, unknown seccomp profile, no command, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// A container with this (name, pod, attempt) exists.
    #[error("container name {name:?} is reserved for container {id}")]
    AlreadyExists { name: String, id: String },
    #[error("container {0} not found")]
    NotFound(String),
    /// The pod or container is not in a state that allows the call (pod
    /// not ready, exec in a stopped container, start twice).
    #[error("{0}")]
    FailedPrecondition(String),
    /// ExecSync ran longer than its timeout; the process was killed.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The OCI runtime refused or failed (its message included).
    #[error("OCI runtime: {0}")]
    Runtime(String),
    /// The pod's shim could not be started or reached.
    #[error("shim of pod {pod_id}: {message}")]
    Shim { pod_id: String, message: String },
    /// Creating or removing the container's rootfs, bundle or dirs failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
}

impl RuntimeError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            what: what.into(),
            source,
        }
    }

    /// Maps a shim's error answer.
    pub(crate) fn from_shim(kind: ErrorKind, message: String) -> Self {
        match kind {
            ErrorKind::NotFound => RuntimeError::NotFound(message),
            ErrorKind::AlreadyExists => RuntimeError::FailedPrecondition(message),
            ErrorKind::InvalidState => RuntimeError::FailedPrecondition(message),
            ErrorKind::Runtime => RuntimeError::Runtime(message),
            ErrorKind::Invalid => RuntimeError::InvalidArgument(message),
            ErrorKind::Io => RuntimeError::Runtime(message),
        }
    }
}

impl From<berth_spec::SpecError> for RuntimeError {
    fn from(e: berth_spec::SpecError) -> Self {
        if e.is_invalid_argument() {
            RuntimeError::InvalidArgument(e.to_string())
        } else {
            RuntimeError::Runtime(format!("generating the OCI spec: {e}"))
        }
    }
}
