//! `berth-shim pause <pod-id>`: pid 1 of a pod's shared PID namespace.
//! It holds the namespace open, reaps the orphans reparented to it, and
//! exits on SIGTERM or SIGINT. The pod id is only there so berthd can tell
//! its holder from a process that reused the pid.

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

pub fn main() -> i32 {
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        set.add(s);
    }
    if sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).is_err() {
        return 1;
    }
    let _ = std::env::set_current_dir("/");
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
