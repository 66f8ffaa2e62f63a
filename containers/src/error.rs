//! Container errors. Each variant says what went wrong in the container
//! domain's terms; `berth-cri` decides, in one place, which gRPC code a
//! kubelet sees for it.

use std::path::PathBuf;
use std::time::Duration;

use berth_shim::proto::ErrorKind;

use crate::record::State;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No RuntimeClass handler of that name is configured.
    #[error("no runtime handler {0:?} is configured")]
    NoHandler(String),
    /// The handler's binary is not installed on this node.
    #[error(
        "runtime handler {handler:?}: binary {binary:?} not found (next to berthd or in $PATH)"
    )]
    HandlerMissing { handler: String, binary: String },
    /// The berth-shim binary is not installed on this node.
    #[error("shim binary {0:?} not found (next to berthd or in $PATH)")]
    ShimMissing(String),
    /// A `[runtime]` setting berthd was started with cannot be used.
    #[error("[runtime] {key}: {reason}")]
    Config { key: &'static str, reason: String },
    /// A call named no container.
    #[error("container_id is required")]
    IdRequired,
    /// An id prefix names several containers.
    #[error("container id prefix {0:?} matches more than one container")]
    AmbiguousId(String),
    #[error("container {0} not found")]
    NotFound(String),
    /// A container with this (name, pod, attempt) exists.
    #[error("container name {name:?} is reserved for container {id}")]
    NameTaken { name: String, id: String },
    /// Containers are created only in a ready pod.
    #[error("pod sandbox {0} is not ready")]
    PodNotReady(String),
    /// The container's state does not allow the call (start twice, exec in
    /// a stopped container).
    #[error("container {id} is {state:?}, not {wanted}")]
    WrongState {
        id: String,
        state: State,
        wanted: &'static str,
    },
    /// A container log path outside the pod's log directory, or one that
    /// has no log directory to be relative to.
    #[error("log_path {path:?}: {reason}")]
    BadLogPath { path: String, reason: String },
    /// A writable mount of berth's own root or state directory (or of one
    /// that holds it) into a container that is not privileged.
    #[error(
        "mount of {host_path} into a container that is not privileged: it holds or is inside berth's {protected}; mount it read-only"
    )]
    ProtectedMount {
        host_path: PathBuf,
        protected: PathBuf,
    },
    /// ExecSync without a command.
    #[error("cmd is required")]
    EmptyCommand,
    /// ExecSync ran longer than its timeout; the process was killed.
    #[error("command {cmd:?} in container {id} timed out after {timeout:?}")]
    ExecTimedOut {
        id: String,
        cmd: Vec<String>,
        timeout: Duration,
    },
    /// The CRI config and the image do not make an OCI spec (bad input),
    /// or the host failed while reading what it needs.
    #[error(transparent)]
    Spec(#[from] berth_spec::SpecError),
    /// The OCI runtime refused or failed; its own message included.
    #[error("OCI runtime {runtime}: {action}: {message}")]
    Runtime {
        runtime: PathBuf,
        action: String,
        message: String,
    },
    /// The pod's shim answered a call with an error of this kind.
    #[error("{message}")]
    ShimRefused { kind: ErrorKind, message: String },
    /// The pod's shim could not be started, reached or understood.
    #[error("shim of pod {pod_id}: {message}")]
    Shim { pod_id: String, message: String },
    /// A container did not exit after SIGKILL.
    #[error("container {id} did not exit {waited:?} after SIGKILL")]
    Unkillable { id: String, waited: Duration },
    /// A file berth wrote (bundle, exec process) does not read back.
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    /// Creating or removing the container's rootfs, bundle or dirs failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The caller's image volumes do not match the config's (berthd's own
    /// mistake: it resolves each image volume before the create).
    #[error("image volumes: {0}")]
    ImageVolumes(String),
    /// A background task of berthd's (a blocking thread, a removal) died.
    #[error("internal task: {0}")]
    Task(String),
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

    /// The shim's answer to a request was not the one the call expects.
    pub(crate) fn unexpected(pod_id: &str, answer: impl std::fmt::Debug) -> Self {
        RuntimeError::Shim {
            pod_id: pod_id.to_owned(),
            message: format!("unexpected answer {answer:?}"),
        }
    }

    /// Maps a shim's error answer: a container it does not know is
    /// `NotFound`; everything else keeps the shim's kind.
    pub(crate) fn from_shim(kind: ErrorKind, message: String) -> Self {
        match kind {
            ErrorKind::NotFound => RuntimeError::NotFound(message),
            kind => RuntimeError::ShimRefused { kind, message },
        }
    }
}
