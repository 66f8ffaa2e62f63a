//! The one error type of spec generation.

use std::path::PathBuf;

/// Why a spec could not be generated.
///
/// [`SpecError::is_invalid_argument`] tells bad input (the CRI request or the
/// image: kubelet should see `InvalidArgument`) from failures of the host.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Neither the CRI command/args nor the image entrypoint/cmd give a command.
    #[error(
        "no command specified: the container config and the image give neither a command nor args"
    )]
    NoCommand,

    /// `ExecSync`/`Exec` without a command.
    #[error("exec needs a command")]
    NoExecCommand,

    /// A user string (image USER, or built from the security context) that
    /// cannot be parsed.
    #[error("invalid user {user:?}: {reason}")]
    InvalidUser { user: String, reason: String },

    /// `run_as_group` without `run_as_user`/`run_as_username`.
    #[error("run_as_group {0} is specified without run_as_user or run_as_username")]
    GroupWithoutUser(i64),

    /// A user name that is not in the image's /etc/passwd.
    #[error("user {0:?} not found in the image's /etc/passwd")]
    UserNotFound(String),

    /// A group name that is not in the image's /etc/group.
    #[error("group {0:?} not found in the image's /etc/group")]
    GroupNotFound(String),

    /// A file of the image (/etc/passwd, /etc/group) that is not a regular file.
    #[error("{path} in the image is not a regular file")]
    NotARegularFile { path: String },

    /// A file of the image (/etc/passwd, /etc/group) past the size cap.
    #[error("{path} in the image is larger than {limit} bytes")]
    FileTooLarge { path: String, limit: usize },

    /// The working directory is not absolute.
    #[error("working directory {0:?} is not an absolute path")]
    InvalidWorkingDir(String),

    /// A CRI mount whose host path does not exist.
    #[error("mount source {host_path:?} (for {container_path:?}) does not exist")]
    MountSourceMissing {
        host_path: PathBuf,
        container_path: String,
    },

    /// A CRI mount that cannot be honoured as asked.
    #[error("invalid mount for {container_path:?}: {reason}")]
    InvalidMount {
        container_path: String,
        reason: String,
    },

    /// The host mount under a propagated (shared/slave) CRI mount does not
    /// allow the requested propagation.
    #[error("mount propagation for {path:?}: {reason}")]
    MountPropagation { path: PathBuf, reason: String },

    /// One of the pod's own files (hosts, resolv.conf) is missing: berth's
    /// sandbox state is broken, not the request.
    #[error("pod file {0:?} does not exist")]
    PodFileMissing(PathBuf),

    /// A CRI device whose host path does not exist.
    #[error("device {0:?} does not exist on the host")]
    DeviceMissing(PathBuf),

    /// A CRI device whose host path is not a character or block device.
    #[error("{0:?} is not a character or block device")]
    NotADevice(PathBuf),

    /// A CRI device with an invalid cgroup permission string.
    #[error("device {path:?}: invalid permissions {permissions:?} (one or more of r, w, m)")]
    InvalidDevicePermissions { path: PathBuf, permissions: String },

    /// A capability name that Linux does not know.
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),

    /// A privileged container in a sandbox that was not created privileged.
    #[error("no privileged container allowed in a sandbox that is not privileged")]
    PrivilegedNotAllowed,

    /// A seccomp or AppArmor security profile that is not valid as given.
    #[error("invalid security profile: {0}")]
    InvalidSecurityProfile(String),

    /// A Localhost seccomp profile file that does not exist.
    #[error("seccomp profile {0:?} not found")]
    SeccompProfileNotFound(PathBuf),

    /// A Localhost seccomp profile file that is not a valid profile.
    #[error("seccomp profile {path:?} is invalid: {reason}")]
    SeccompProfileInvalid { path: PathBuf, reason: String },

    /// A Localhost AppArmor profile that is not loaded.
    #[error("apparmor profile {0:?} is not loaded")]
    ApparmorProfileNotFound(String),

    /// An AppArmor profile was asked for on a host without AppArmor.
    #[error("apparmor is not enabled on this host, but profile {0:?} was requested")]
    ApparmorNotSupported(String),

    /// A stop signal that is not a signal.
    #[error("invalid signal {0:?}")]
    InvalidSignal(String),

    /// Resource values out of their range.
    #[error("invalid resources: {0}")]
    InvalidResources(String),

    /// The user namespace asked for cannot be given as asked (a container
    /// disagreeing with its pod, ids its mappings do not cover).
    #[error("user namespace: {0}")]
    UserNamespace(String),

    /// A feature of the CRI request berth does not implement.
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// The rootfs path given by the caller is not absolute.
    #[error("rootfs path {0:?} is not absolute")]
    RootfsNotAbsolute(PathBuf),

    /// An I/O failure on the host.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl SpecError {
    /// True when the request (or the image it names) is at fault: map to
    /// gRPC `InvalidArgument`. False for failures of the host or of berth's
    /// own state.
    pub fn is_invalid_argument(&self) -> bool {
        !matches!(
            self,
            SpecError::Io { .. }
                | SpecError::PodFileMissing(_)
                | SpecError::RootfsNotAbsolute(_)
                | SpecError::MountPropagation { .. }
        )
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SpecError::Io {
            context: context.into(),
            source,
        }
    }
}
