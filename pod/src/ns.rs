//! Pod namespaces without an infra container: created by `unshare` on a
//! dedicated thread (never a tokio worker: namespaces are per thread) and
//! kept alive by bind-mounting `/proc/thread-self/ns/<kind>` onto a file,
//! like `ip netns`. The hostname and the pod's sysctls are set from inside,
//! before the thread ends. A pod with a user namespace of its own gets its
//! namespaces from a helper process instead (userns.rs).

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

use crate::spec::UserNs;
use crate::sysctl::{self, SysctlNs};

#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("creating namespaces ({what}): {source}")]
    Unshare { what: String, source: nix::Error },
    #[error("pinning namespace at {path}: {source}")]
    Pin {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("setting hostname {hostname:?}: {source}")]
    Hostname {
        hostname: String,
        source: nix::Error,
    },
    #[error("setting sysctl {name}={value}: {source}")]
    Sysctl {
        name: String,
        value: String,
        source: std::io::Error,
    },
    /// A step of making the pod's user namespace (userns.rs).
    #[error("user namespace: {step}: {source}")]
    UserNs {
        step: &'static str,
        source: std::io::Error,
    },
    #[error("namespace thread failed")]
    Thread,
    /// The shared PID namespace's holder process could not be started.
    #[error("starting the PID namespace holder: {0}")]
    PidHolder(#[source] std::io::Error),
}

/// Namespaces to create for a pod, and what to set inside them.
#[derive(Debug, Clone, Default)]
pub struct NsRequest {
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    /// A user namespace of the pod's own, pinned at the path, owning the
    /// others (userns.rs); `None`: they belong to the host's.
    pub user: Option<(PathBuf, UserNs)>,
    pub hostname: Option<String>,
    pub sysctls: Vec<(String, String)>,
}

fn pin(kind: &str, path: &Path) -> Result<(), NsError> {
    pin_from(Path::new(&format!("/proc/thread-self/ns/{kind}")), path)
}

/// Pins the namespace file `src` (a `/proc/.../ns/<kind>`) at `path`.
pub(crate) fn pin_from(src: &Path, path: &Path) -> Result<(), NsError> {
    let err = |source| NsError::Pin {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(err)?;
    }
    fs::File::create(path).map_err(err)?;
    mount(
        Some(src),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| err(e.into()))
}

/// Unmounts and removes a pinned namespace file; gone already is fine.
pub fn unpin(path: &Path) -> Result<(), std::io::Error> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn inside(req: &NsRequest) -> Result<(), NsError> {
    let mut flags = CloneFlags::empty();
    let mut what = Vec::new();
    for (want, flag, name) in [
        (req.net.is_some(), CloneFlags::CLONE_NEWNET, "net"),
        (req.ipc.is_some(), CloneFlags::CLONE_NEWIPC, "ipc"),
        (req.uts.is_some(), CloneFlags::CLONE_NEWUTS, "uts"),
    ] {
        if want {
            flags |= flag;
            what.push(name);
        }
    }
    if flags.is_empty() {
        return Ok(());
    }
    unshare(flags).map_err(|source| NsError::Unshare {
        what: what.join(","),
        source,
    })?;
    configure(req)?;
    for (path, kind) in [(&req.net, "net"), (&req.ipc, "ipc"), (&req.uts, "uts")] {
        if let Some(p) = path {
            pin(kind, p)?;
        }
    }
    Ok(())
}

/// The hostname and sysctls, set from a thread in the pod's namespaces.
fn configure(req: &NsRequest) -> Result<(), NsError> {
    if let (Some(_), Some(h)) = (&req.uts, &req.hostname) {
        nix::unistd::sethostname(h).map_err(|source| NsError::Hostname {
            hostname: h.clone(),
            source,
        })?;
    }
    for (name, value) in &req.sysctls {
        // Validated by the caller against the namespaces requested.
        fs::write(sysctl::proc_path(name), value).map_err(|source| NsError::Sysctl {
            name: name.clone(),
            value: value.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Sets the hostname and sysctls of namespaces made and pinned elsewhere
/// (userns.rs), from a thread that joins them.
pub(crate) fn configure_pinned(req: &NsRequest) -> Result<(), NsError> {
    let r = req.clone();
    std::thread::Builder::new()
        .name("berth-ns".into())
        .spawn(move || {
            for (path, flag) in [
                (&r.uts, CloneFlags::CLONE_NEWUTS),
                (&r.net, CloneFlags::CLONE_NEWNET),
                (&r.ipc, CloneFlags::CLONE_NEWIPC),
            ] {
                if let Some(p) = path {
                    let f = fs::File::open(p).map_err(|source| NsError::Pin {
                        path: p.clone(),
                        source,
                    })?;
                    nix::sched::setns(&f, flag).map_err(|source| NsError::Unshare {
                        what: format!("joining {}", p.display()),
                        source,
                    })?;
                }
            }
            configure(&r)
        })
        .map_err(|_| NsError::Thread)?
        .join()
        .map_err(|_| NsError::Thread)?
}

/// Creates and pins the requested namespaces, owned by the host's user
/// namespace (a pod with one of its own: `userns::create`). On error
/// nothing stays pinned.
pub fn create(req: &NsRequest) -> Result<(), NsError> {
    let r = req.clone();
    let result = std::thread::Builder::new()
        .name("berth-ns".into())
        .spawn(move || inside(&r))
        .map_err(|_| NsError::Thread)?
        .join()
        .map_err(|_| NsError::Thread)?;
    if result.is_err() {
        unpin_all(req);
    }
    result
}

/// Unpins every namespace `req` names; the user namespace last (it owns
/// the others).
pub(crate) fn unpin_all(req: &NsRequest) {
    let user = req.user.as_ref().map(|(p, _)| p);
    for p in [&req.net, &req.ipc, &req.uts]
        .into_iter()
        .flatten()
        .chain(user)
    {
        let _ = unpin(p);
    }
}

/// Which namespace a sysctl needs, checked against what the pod has.
pub fn check_sysctl(name: &str, has_net: bool, has_ipc: bool) -> Result<SysctlNs, String> {
    let ns = sysctl::classify(name)?;
    let ok = match ns {
        SysctlNs::Net | SysctlNs::Uts => has_net,
        SysctlNs::Ipc => has_ipc,
    };
    if !ok {
        return Err(format!(
            "sysctl {name:?} cannot be set for a pod using the node's {} namespace",
            if ns == SysctlNs::Ipc {
                "IPC"
            } else {
                "network"
            }
        ));
    }
    Ok(ns)
}

/// A TCP socket, not yet connected, created inside the network namespace
/// pinned at `netns` (a socket belongs to the namespace it was made in,
/// wherever it is used afterwards): for port-forward. Made on a thread of
/// its own that enters the namespace and ends.
pub fn tcp_socket_in(netns: &Path, v6: bool) -> std::io::Result<std::net::TcpStream> {
    let netns = netns.to_owned();
    std::thread::Builder::new()
        .name("berth-netns-socket".into())
        .spawn(move || {
            let ns = fs::File::open(&netns)?;
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            let domain = if v6 {
                nix::sys::socket::AddressFamily::Inet6
            } else {
                nix::sys::socket::AddressFamily::Inet
            };
            let fd = nix::sys::socket::socket(
                domain,
                nix::sys::socket::SockType::Stream,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC
                    | nix::sys::socket::SockFlag::SOCK_NONBLOCK,
                None,
            )
            .map_err(std::io::Error::from)?;
            Ok(std::net::TcpStream::from(fd))
        })?
        .join()
        .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
}
