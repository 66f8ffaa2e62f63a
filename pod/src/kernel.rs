//! The kernel operations a pod's life needs (namespaces, the PID-namespace
//! holder, the pod's /dev/shm), behind one narrow trait: the state machine
//! in `pods.rs` runs against the host ([`HostKernel`]) in berthd, and
//! against a fake in its unit tests, which need no root. Cgroups need no
//! seam: [`berth_cgroups::Cgroups`] takes its root as a parameter.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_process::sealed::SealedExe;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::ns::{self, NsError, NsRequest};
use crate::pidns;

pub trait PodKernel: Send + Sync + std::fmt::Debug + 'static {
    /// Creates and pins the namespaces `req` asks for; on error nothing
    /// stays pinned.
    fn create_namespaces(&self, req: &NsRequest) -> Result<(), NsError>;
    /// Unpins a pinned namespace; one gone already is fine.
    fn unpin_namespace(&self, path: &Path) -> io::Result<()>;
    /// Whether shared PID namespaces can be held (the holder binary exists).
    fn holds_pid_namespaces(&self) -> bool;
    /// Starts the PID-namespace holder of `pod_id`, in the namespaces
    /// pinned at `join` and, when the pod has one, as root of its user
    /// namespace pinned at `user` (which then owns the PID namespace);
    /// returns its pid.
    fn spawn_holder(&self, pod_id: &str, user: Option<&Path>, join: &[PathBuf]) -> io::Result<u32>;
    /// Kills every holder of `pod_id` still running: `known` (the pid berth
    /// recorded) and any other found by its command line, which names the
    /// pod (a crash may have come before the pid was recorded).
    fn stop_holders(&self, pod_id: &str, known: Option<u32>);
    /// Mounts the pod's /dev/shm (tmpfs of `size_mib`) at `path`, its root
    /// owned by `owner` (uid, gid; the pod's root in a user namespace of
    /// its own) or by root.
    fn mount_shm(&self, path: &Path, size_mib: u64, owner: Option<(u32, u32)>) -> io::Result<()>;
    /// Unmounts it; not mounted is fine.
    fn unmount_shm(&self, path: &Path) -> io::Result<()>;
    /// Gives a file berth wrote for the pod to `owner` (uid, gid): the
    /// pod's root, when it has a user namespace of its own.
    fn own(&self, path: &Path, owner: (u32, u32)) -> io::Result<()>;
}

/// The host's kernel.
#[derive(Debug, Default)]
pub struct HostKernel {
    /// A sealed copy of `berth-shim`, whose `pause` mode holds shared PID
    /// namespaces.
    holder_exe: Option<Arc<SealedExe>>,
}

impl HostKernel {
    pub fn new(holder_exe: Option<Arc<SealedExe>>) -> HostKernel {
        HostKernel { holder_exe }
    }
}

impl PodKernel for HostKernel {
    fn create_namespaces(&self, req: &NsRequest) -> Result<(), NsError> {
        crate::userns::create(req)
    }

    fn unpin_namespace(&self, path: &Path) -> io::Result<()> {
        ns::unpin(path)
    }

    fn holds_pid_namespaces(&self) -> bool {
        self.holder_exe.is_some()
    }

    fn spawn_holder(&self, pod_id: &str, user: Option<&Path>, join: &[PathBuf]) -> io::Result<u32> {
        let exe = self
            .holder_exe
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no holder binary"))?;
        match user {
            Some(user) => crate::userns::spawn_holder(exe, pod_id, user, join),
            None => pidns::spawn_holder(exe, pod_id, join),
        }
    }

    fn stop_holders(&self, pod_id: &str, known: Option<u32>) {
        if let Some(pid) = known {
            pidns::stop_holder(pid, pod_id);
        }
        for pid in pidns::find_holders(pod_id) {
            pidns::stop_holder(pid, pod_id);
        }
    }

    fn mount_shm(&self, path: &Path, size_mib: u64, owner: Option<(u32, u32)>) -> io::Result<()> {
        std::fs::create_dir_all(path)?;
        let mut opts = format!("mode=1777,size={size_mib}m");
        if let Some((uid, gid)) = owner {
            opts.push_str(&format!(",uid={uid},gid={gid}"));
        }
        mount(
            Some("shm"),
            path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(opts.as_str()),
        )
        .map_err(io::Error::from)
    }

    fn unmount_shm(&self, path: &Path) -> io::Result<()> {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn own(&self, path: &Path, (uid, gid): (u32, u32)) -> io::Result<()> {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
    }
}
