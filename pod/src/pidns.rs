//! The pod's shared PID namespace (namespace_options.pid = POD). A PID
//! namespace lives only as long as its pid 1, so a minimal holder process
//! (`berth-shim pause <pod-id>`: reaps orphans, exits on SIGTERM) is
//! started as pid 1 of a new PID namespace; containers join it through
//! `/proc/<holder>/ns/pid`. It runs in its own session, so it outlives a
//! berthd restart; berthd kills it when the pod stops.
//!
//! Every process of the pod sees the holder, so it runs from a sealed copy
//! of berth-shim (berth_process::sealed: its `/proc/<pid>/exe` must not
//! lead to the host's file) and in the pod's own network, IPC and UTS
//! namespaces; it isolates itself further at start (berth-shim's pause.rs).

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use berth_process::sealed::SealedExe;
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// The argument that makes `berth-shim` a PID namespace holder.
pub const HOLDER_ARG: &str = "pause";

/// Starts the holder for `pod_id` from `exe` (a sealed copy of berth-shim),
/// in the namespaces pinned at `join` (the pod's network, IPC and UTS
/// namespaces; none for a pod on the host's); returns its pid (in
/// berthd's namespace).
pub fn spawn_holder(exe: &Arc<SealedExe>, pod_id: &str, join: &[PathBuf]) -> io::Result<u32> {
    let exe = Arc::clone(exe);
    let pod_id = pod_id.to_owned();
    let join: Vec<File> = join.iter().map(File::open).collect::<io::Result<_>>()?;
    // unshare(CLONE_NEWPID) changes the namespace of the calling thread's
    // future children only: a thread of its own keeps berthd's other
    // spawns out of it.
    std::thread::spawn(move || -> io::Result<u32> {
        unshare(CloneFlags::CLONE_NEWPID).map_err(io::Error::from)?;
        let mut cmd = Command::new(exe.exec_path());
        cmd.arg0(exe.source())
            .arg(HOLDER_ARG)
            .arg(&pod_id)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: setsid and setns are async-signal-safe system calls on
        // descriptors opened before the fork; nothing else runs between
        // fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::setsid()?;
                for ns in &join {
                    setns(ns.as_fd(), CloneFlags::empty())?;
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        Ok(child.id())
    })
    .join()
    .map_err(|_| io::Error::other("PID namespace thread panicked"))?
}

/// `/proc/<pid>/ns/pid` of the holder, the path containers join.
pub fn ns_path(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/pid"))
}

/// Whether `pid` is still `pod_id`'s holder (not a reused pid).
pub fn is_holder(pid: u32, pod_id: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.len() >= 3 && args[1] == HOLDER_ARG.as_bytes() && args[2] == pod_id.as_bytes()
}

/// The pids of every running holder of `pod_id`, found by their command
/// line (`berth-shim pause <pod-id>`): those a crash left unrecorded too.
pub fn find_holders(pod_id: &str) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| is_holder(*pid, pod_id))
        .collect()
}

/// Kills the holder (and with it every process left in the namespace) and
/// reaps it when it is berthd's child. A holder already gone is fine.
pub fn stop_holder(pid: u32, pod_id: &str) {
    if !is_holder(pid, pod_id) {
        return;
    }
    let p = Pid::from_raw(pid as i32);
    let _ = kill(p, Signal::SIGKILL);
    // Not our child after a berthd restart (ECHILD): init reaps it.
    let _ = waitpid(p, Some(WaitPidFlag::empty()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_identity_needs_the_pod_id() {
        // This test process is not a holder of anything.
        assert!(!is_holder(std::process::id(), "p1"));
        assert!(!is_holder(u32::MAX, "p1"));
        assert_eq!(ns_path(42), PathBuf::from("/proc/42/ns/pid"));
    }
}
