//! What a process of berth's that starts others (the shim, berth-runtime)
//! gives them: every signal at its default disposition, none blocked.
//!
//! Rust ignores SIGPIPE before main, the shim blocks the signals it reads
//! from a signalfd, and a starter may have ignored others. Ignored signals
//! and the mask survive execve and reach the container through the
//! runtime: it would get EPIPE instead of dying of SIGPIPE in a pipeline,
//! and never see a blocked SIGTERM.

use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};

/// Resets every signal to SIG_DFL and unblocks all. Async-signal-safe
/// (signal and sigprocmask only), so it may run between fork and exec.
/// Signals the C library reserves for itself (32 and 33 with glibc) are
/// refused by it and stay as they were.
pub fn reset_signals() -> nix::Result<()> {
    for sig in 1..=libc::SIGRTMAX() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: SIG_DFL installs no handler.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_gets_default_signals() {
        // In a child, so the test process keeps its own.
        // SAFETY: the child only makes syscalls, reads /proc and exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                // SAFETY: SIG_IGN installs no handler.
                unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
                let mut blocked = SigSet::empty();
                blocked.add(nix::sys::signal::Signal::SIGTERM);
                blocked.thread_block().unwrap();
                let ok = reset_signals().is_ok()
                    && std::fs::read_to_string("/proc/self/status").is_ok_and(|st| {
                        let mask = |name: &str| {
                            st.lines()
                                .find_map(|l| l.strip_prefix(name))
                                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
                        };
                        mask("SigBlk:") == Some(0)
                            && mask("SigIgn:").is_some_and(|m| m & 0x7fff_ffff == 0)
                    });
                // SAFETY: leaves the forked test process without running
                // the harness's exit handlers.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let st = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
