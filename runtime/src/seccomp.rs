//! Loading a container's seccomp profile into a process berth-runtime
//! starts itself (both direct paths, and libcontainer's exec, which drops
//! the profile): shared by `payload` and `exec`, so neither depends on the
//! other.

use libcontainer::oci_spec::runtime::LinuxSeccomp;
use libcontainer::workload::ExecutorError;

use crate::log;

/// Loading a filter needs CAP_SYS_ADMIN or no_new_privs. The exec'd process
/// has already dropped to its own capabilities here, so without either it
/// gets no_new_privs (setuid binaries then do not elevate): better than an
/// exec that escapes the container's profile.
pub(crate) fn load(seccomp: &LinuxSeccomp) -> Result<(), ExecutorError> {
    let first = match libcontainer::seccomp::initialize_seccomp(seccomp) {
        Ok(notify) => return close_notify(notify),
        Err(e) => e,
    };
    if nix::sys::prctl::get_no_new_privs().unwrap_or(false) {
        return Err(ExecutorError::Other(format!(
            "load the container's seccomp profile: {first}"
        )));
    }
    log::warn(&format!(
        "exec: loading seccomp needs no_new_privs or CAP_SYS_ADMIN ({first}): setting no_new_privs"
    ));
    nix::sys::prctl::set_no_new_privs()
        .map_err(|e| ExecutorError::Other(format!("set no_new_privs: {e}")))?;
    match libcontainer::seccomp::initialize_seccomp(seccomp) {
        Ok(notify) => close_notify(notify),
        Err(e) => Err(ExecutorError::Other(format!(
            "load the container's seccomp profile: {e}"
        ))),
    }
}

/// A profile with SCMP_ACT_NOTIFY returns a listener fd; exec has no seccomp
/// agent to hand it to, so it is closed (notified syscalls then fail).
fn close_notify(fd: Option<std::os::fd::RawFd>) -> Result<(), ExecutorError> {
    if let Some(fd) = fd {
        log::warn("exec: seccomp notify is not supported for exec'd processes");
        let _ = nix::unistd::close(fd);
    }
    Ok(())
}
