//! `berth-shim pause <pod-id>`: pid 1 of a pod's shared PID namespace.
//! It holds the namespace open, reaps the orphans reparented to it, and
//! exits on SIGTERM or SIGINT. The pod id is only there so berthd can tell
//! its holder from a process that reused the pid.
//!
//! Every process of the pod sees it, so it exposes nothing of the host:
//! berthd runs it from a sealed copy of this binary and in the pod's
//! network, IPC and UTS namespaces; it makes itself non-dumpable first
//! (its /proc entries closed to the pod: berth_process::sealed), then
//! leaves the host's mount namespace for an empty read-only root and drops
//! every capability. A container allowed to ptrace it (CAP_SYS_PTRACE)
//! would gain a process that can reach nothing the pod cannot.

use std::io;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

pub fn main() -> i32 {
    if berth_process::sealed::make_non_dumpable().is_err() {
        return 1;
    }
    if let Err(e) = isolate() {
        eprintln!("berth-shim pause: {e}");
        return 1;
    }
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        set.add(s);
    }
    if sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).is_err() {
        return 1;
    }
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => {
                // Reap everything that is ready; orphans of the pod land here.
                while let Ok(st) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    if st == WaitStatus::StillAlive {
                        break;
                    }
                }
            }
            Ok(_) => return 0,
            Err(_) => {}
        }
    }
}

/// An empty, read-only root in a mount namespace of its own; no
/// capabilities, for good (bounding and ambient sets emptied, no new
/// privileges).
fn isolate() -> io::Result<()> {
    use rustix::mount::{
        MountFlags, MountPropagationFlags, UnmountFlags, mount, mount_change, unmount,
    };
    use rustix::thread::{CapabilitySet, CapabilitySets, UnshareFlags};

    // SAFETY: the holder is single-threaded, and nothing here relies on
    // the namespace it leaves.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) }?;
    mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )?;
    // /proc exists on every host; in this namespace an empty tmpfs covers it
    // and becomes the root.
    mount(
        "none",
        "/proc",
        "tmpfs",
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        c"size=4k,mode=0555",
    )?;
    std::env::set_current_dir("/proc")?;
    rustix::process::pivot_root(".", ".")?;
    unmount(".", UnmountFlags::DETACH)?;
    std::env::set_current_dir("/")?;

    rustix::thread::clear_ambient_capability_set()?;
    for bit in 0..64 {
        match rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(
            1 << bit,
        )) {
            // Beyond the kernel's last capability.
            Err(rustix::io::Errno::INVAL) => break,
            r => r?,
        }
    }
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    )?;
    rustix::thread::set_no_new_privs(true)?;
    Ok(())
}
