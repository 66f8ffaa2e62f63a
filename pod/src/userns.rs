//! The pod's user namespace (`userns_options.mode = POD`, Kubernetes'
//! `hostUsers: false`): the rules its mappings follow, and the kernel work.
//!
//! A user namespace cannot be entered or made by a thread of berthd (the
//! kernel refuses both to a multi-threaded process), and the namespaces a
//! pod's containers share must be *owned* by it: a network namespace owned
//! by the host's user namespace would give the pod's root no say over its
//! own interfaces, and sysfs could not be mounted from inside. So, as
//! containerd makes the pod's netns from a helper process, berthd forks a
//! helper that unshares the user namespace together with the network, IPC
//! and UTS ones (the kernel makes the user namespace first, and it owns
//! the others), waits while berthd writes the uid and gid maps and pins
//! every namespace by bind mount, and exits. The hostname and sysctls are
//! then set from a thread that joins the pinned namespaces (berthd's root
//! is privileged over every namespace below the host's).
//!
//! The PID namespace a shared-PID pod's containers join must be owned by
//! the pod's user namespace too (the kernel lets only its owner mount
//! /proc for it), so its holder is started by a helper that joins the user
//! namespace as the pod's root and the pod's other namespaces, unshares
//! the PID namespace and forks the holder, its pid 1.
//!
//! Between fork and exit (or exec), the helpers make only system calls on
//! descriptors and strings prepared before the fork: berthd has other
//! threads, whose locks a child must not need.

use std::ffi::{CString, c_char};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_process::sealed::SealedExe;
use nix::fcntl::OFlag;
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork, pipe2};

use crate::ns::{NsError, NsRequest, pin_from};
use crate::pidns::HOLDER_ARG;
use crate::spec::{IdMap, NsMode, NsOptions, UserNs};

/// The ids of a pod's user namespace must map, in one range each.
/// `kind` names the field in errors (`uids`, `gids`).
///
/// The CRI's rules: one mapping (kubelet's allocator gives one range of
/// 65536 ids per pod), covering id 0 inside (the pod's root), of a length
/// above 0, whose ranges stay below 2^32 on both sides. berth also refuses
/// a range holding the host's id 0: such a pod would have the host's root
/// among its users.
pub fn mapping(kind: &str, maps: &[IdMap]) -> Result<IdMap, String> {
    let m = match maps {
        [] => return Err(format!("userns_options.{kind}: no mapping given")),
        [m] => *m,
        more => {
            return Err(format!(
                "userns_options.{kind}: {} mappings given, only one is supported",
                more.len()
            ));
        }
    };
    if m.length == 0 {
        return Err(format!("userns_options.{kind}: mapping of length 0"));
    }
    for (side, start) in [("container", m.container_id), ("host", m.host_id)] {
        if u64::from(start) + u64::from(m.length) > 1 << 32 {
            return Err(format!(
                "userns_options.{kind}: {side} ids {start}+{} overflow 32 bits",
                m.length
            ));
        }
    }
    if m.container_id != 0 {
        return Err(format!(
            "userns_options.{kind}: container id 0 is not mapped (the mapping starts at {})",
            m.container_id
        ));
    }
    if m.host_id == 0 {
        return Err(format!(
            "userns_options.{kind}: the mapping includes the host's id 0 (root)"
        ));
    }
    Ok(m)
}

/// A user namespace's pod cannot use the node's network, IPC or PID
/// namespace (Kubernetes refuses `hostUsers: false` with hostNetwork,
/// hostIPC or hostPID): those are owned by the host's user namespace.
pub fn check_namespaces(ns: &NsOptions) -> Result<(), String> {
    for (mode, what) in [(ns.network, "network"), (ns.ipc, "ipc"), (ns.pid, "pid")] {
        if mode == NsMode::Node {
            return Err(format!(
                "a pod with its own user namespace cannot use the node's {what} namespace"
            ));
        }
    }
    Ok(())
}

fn err(step: &'static str) -> impl FnOnce(io::Error) -> NsError {
    move |source| NsError::UserNs { step, source }
}

fn nix_err(step: &'static str) -> impl FnOnce(nix::Error) -> NsError {
    move |e| NsError::UserNs {
        step,
        source: e.into(),
    }
}

/// Kills and reaps a helper that is no longer needed.
fn end(child: Pid) {
    let _ = kill(child, Signal::SIGKILL);
    let _ = waitpid(child, None);
}

/// Creates the user namespace `req.user` with its maps, and the
/// namespaces `req` asks for, owned by it; pins every one and sets the
/// hostname and sysctls. On error nothing stays pinned.
pub(crate) fn create(req: &NsRequest) -> Result<(), NsError> {
    let Some((pin, userns)) = &req.user else {
        return crate::ns::create(req);
    };
    let made = create_in(req, userns, pin).and_then(|()| crate::ns::configure_pinned(req));
    if made.is_err() {
        crate::ns::unpin_all(req);
    }
    made
}

fn create_in(req: &NsRequest, userns: &UserNs, pin: &Path) -> Result<(), NsError> {
    let mut flags = CloneFlags::CLONE_NEWUSER;
    let mut pins: Vec<(&str, &Path)> = Vec::new();
    for (want, flag, kind) in [
        (&req.net, CloneFlags::CLONE_NEWNET, "net"),
        (&req.ipc, CloneFlags::CLONE_NEWIPC, "ipc"),
        (&req.uts, CloneFlags::CLONE_NEWUTS, "uts"),
    ] {
        if let Some(p) = want {
            flags |= flag;
            pins.push((kind, p));
        }
    }
    let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC).map_err(nix_err("pipe"))?;
    let (go_r, go_w) = pipe2(OFlag::O_CLOEXEC).map_err(nix_err("pipe"))?;
    // SAFETY: the child makes only system calls (close, unshare, write,
    // read, _exit) on descriptors made before the fork, allocates nothing
    // and never returns.
    let child = match unsafe { fork() }.map_err(nix_err("fork"))? {
        ForkResult::Child => {
            drop(ready_r);
            drop(go_w);
            let code: i32 = match unshare(flags) {
                Ok(()) => 0,
                Err(e) => e as i32,
            };
            let _ = nix::unistd::write(&ready_w, &code.to_ne_bytes());
            let mut b = [0u8; 1];
            // Until berthd is done with the namespaces (or gone).
            let _ = nix::unistd::read(&go_r, &mut b);
            // SAFETY: leaves at once, running nothing of the parent's.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(ready_w);
    drop(go_r);
    let made = (|| -> Result<(), NsError> {
        let mut code = [0u8; 4];
        File::from(ready_r)
            .read_exact(&mut code)
            .map_err(err("waiting for the helper"))?;
        let code = i32::from_ne_bytes(code);
        if code != 0 {
            return Err(NsError::Unshare {
                what: format!("{flags:?}"),
                source: nix::Error::from_raw(code),
            });
        }
        let proc = PathBuf::from(format!("/proc/{child}"));
        std::fs::write(proc.join("uid_map"), userns.uids.proc_line())
            .map_err(err("writing uid_map"))?;
        std::fs::write(proc.join("gid_map"), userns.gids.proc_line())
            .map_err(err("writing gid_map"))?;
        pin_from(&proc.join("ns/user"), pin)?;
        for (kind, p) in &pins {
            pin_from(&proc.join("ns").join(kind), p)?;
        }
        Ok(())
    })();
    match made {
        Ok(()) => {
            let _ = File::from(go_w).write_all(b"g");
            let _ = waitpid(child, None);
            Ok(())
        }
        Err(e) => {
            end(child);
            Err(e)
        }
    }
}

/// Starts the PID-namespace holder of `pod_id` from `exe` as pid 1 of a
/// PID namespace owned by the user namespace pinned at `user`, in the
/// namespaces pinned at `join` (the pod's network, IPC and UTS ones), as
/// the pod's root. Returns its pid (in berthd's namespace). It is not
/// berthd's child: its helper parent exits, and init reaps it.
pub fn spawn_holder(
    exe: &Arc<SealedExe>,
    pod_id: &str,
    user: &Path,
    join: &[PathBuf],
) -> io::Result<u32> {
    let cstr =
        |b: &[u8]| CString::new(b).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e));
    let prog = cstr(exe.exec_path().as_os_str().as_bytes())?;
    let args = [
        cstr(exe.source().as_os_str().as_bytes())?,
        cstr(HOLDER_ARG.as_bytes())?,
        cstr(pod_id.as_bytes())?,
    ];
    let mut argv: Vec<*const c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let envp: [*const c_char; 1] = [std::ptr::null()];
    let user = File::open(user)?;
    let join: Vec<File> = join.iter().map(File::open).collect::<io::Result<_>>()?;
    let null = File::options().read(true).write(true).open("/dev/null")?;
    let (pid_r, pid_w) = pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let holder = Holder {
        user: user.into(),
        join: join.into_iter().map(OwnedFd::from).collect(),
        null: null.into(),
        prog: &prog,
        argv: &argv,
        envp: &envp,
    };
    // SAFETY: the helper makes only system calls on descriptors and
    // strings prepared above (Holder::run) and ends in _exit; its child
    // ends in execve or _exit.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Child => {
            drop(pid_r);
            let code = holder.run(pid_w);
            // SAFETY: leaves at once, running nothing of the parent's.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(pid_w);
            let status = waitpid(child, None).map_err(io::Error::from)?;
            let mut pid = [0u8; 4];
            match (status, File::from(pid_r).read_exact(&mut pid)) {
                (WaitStatus::Exited(_, 0), Ok(())) => Ok(u32::from_ne_bytes(pid)),
                (WaitStatus::Exited(_, code), _) if code != 0 => Err(io::Error::other(format!(
                    "the holder's helper failed: {}",
                    nix::Error::from_raw(code)
                ))),
                (other, _) => Err(io::Error::other(format!(
                    "the holder's helper ended without a holder: {other:?}"
                ))),
            }
        }
    }
}

/// What the holder's helper needs, prepared before the fork.
struct Holder<'a> {
    user: OwnedFd,
    join: Vec<OwnedFd>,
    null: OwnedFd,
    prog: &'a CString,
    argv: &'a [*const c_char],
    envp: &'a [*const c_char; 1],
}

impl Holder<'_> {
    /// In the forked helper: joins, unshares, forks the holder and writes
    /// its pid to `pid_w`. Returns the helper's exit code (an errno).
    fn run(&self, pid_w: OwnedFd) -> i32 {
        let joined = || -> nix::Result<()> {
            nix::unistd::setsid()?;
            setns(self.user.as_fd(), CloneFlags::CLONE_NEWUSER)?;
            // The pod's root: its files and /dev/shm are the pod root's.
            nix::unistd::setgroups(&[])?;
            let (u, g) = (Uid::from_raw(0), Gid::from_raw(0));
            nix::unistd::setresgid(g, g, g)?;
            nix::unistd::setresuid(u, u, u)?;
            for ns in &self.join {
                setns(ns.as_fd(), CloneFlags::empty())?;
            }
            unshare(CloneFlags::CLONE_NEWPID)
        };
        if let Err(e) = joined() {
            return e as i32;
        }
        // SAFETY: as the helper's own fork (see spawn_holder).
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                // SAFETY: dup2 onto the standard descriptors, then execve
                // of NUL-terminated strings and arrays made before the
                // fork, alive for this call.
                unsafe {
                    for fd in 0..3 {
                        libc::dup2(self.null.as_raw_fd(), fd);
                    }
                    libc::execve(self.prog.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr());
                    libc::_exit(127)
                }
            }
            Ok(ForkResult::Parent { child }) => {
                match nix::unistd::write(&pid_w, &(child.as_raw() as u32).to_ne_bytes()) {
                    Ok(4) => 0,
                    _ => {
                        let _ = kill(child, Signal::SIGKILL);
                        libc::EPIPE
                    }
                }
            }
            Err(e) => e as i32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(container_id: u32, host_id: u32, length: u32) -> IdMap {
        IdMap {
            container_id,
            host_id,
            length,
        }
    }

    #[test]
    fn one_range_from_id_zero() {
        assert_eq!(
            mapping("uids", &[m(0, 65536, 65536)]),
            Ok(m(0, 65536, 65536))
        );
        // The last possible range.
        assert!(mapping("uids", &[m(0, u32::MAX - 65535, 65536)]).is_ok());
    }

    #[test]
    fn what_the_cri_forbids_is_named() {
        let e = |maps: &[IdMap]| mapping("gids", maps).unwrap_err();
        assert!(e(&[]).contains("no mapping"), "{}", e(&[]));
        let two = [m(0, 65536, 1000), m(1000, 70000, 1000)];
        assert!(e(&two).contains("2 mappings"), "{}", e(&two));
        assert!(e(&[m(0, 65536, 0)]).contains("length 0"));
        assert!(e(&[m(1, 65536, 10)]).contains("container id 0 is not mapped"));
        assert!(e(&[m(0, u32::MAX, 2)]).contains("host ids"));
        assert!(e(&[m(u32::MAX, 65536, 2)]).contains("overflow"));
        assert!(e(&[m(0, 0, 65536)]).contains("host's id 0"));
        assert!(e(&[]).starts_with("userns_options.gids"));
    }

    #[test]
    fn ids_translate_inside_the_range_only() {
        let r = m(0, 200_000, 65536);
        assert_eq!(r.to_host(0), Some(200_000));
        assert_eq!(r.to_host(1000), Some(201_000));
        assert_eq!(r.to_host(65535), Some(265_535));
        assert_eq!(r.to_host(65536), None);
        assert_eq!(m(10, 100, 5).to_host(9), None);
        assert_eq!(r.proc_line(), "0 200000 65536\n");
        let ns = UserNs {
            uids: r,
            gids: m(0, 300_000, 65536),
        };
        assert_eq!(ns.root(), (200_000, 300_000));
    }

    #[test]
    fn host_namespaces_do_not_go_with_a_user_namespace() {
        let own = NsOptions::default();
        assert!(check_namespaces(&own).is_ok());
        for f in [
            |n: &mut NsOptions| n.network = NsMode::Node,
            |n: &mut NsOptions| n.ipc = NsMode::Node,
            |n: &mut NsOptions| n.pid = NsMode::Node,
        ] {
            let mut n = own;
            f(&mut n);
            let e = check_namespaces(&n).unwrap_err();
            assert!(e.contains("node's"), "{e}");
        }
        let per_container = NsOptions {
            pid: NsMode::Container,
            ..own
        };
        assert!(check_namespaces(&per_container).is_ok());
    }
}
