//! exec by setns: the common exec (a terminal only through a console
//! socket, no preserved fds, no time namespace) without libcontainer's
//! tenant machinery.
//!
//! libcontainer 0.7 runs an exec as three processes talking over channels,
//! re-checks /proc through pathrs on every open and rebuilds a tenant spec:
//! ~4 ms of a ~5 ms `exec` here, for what nsenter does in ~1 ms. ExecSync is
//! what kubelet's exec probes call every few seconds in every pod, so this
//! path does the same steps itself, in libcontainer's order and with its
//! primitives (capabilities, set_id, rlimits, close_range, seccomp):
//!
//! - parent: open the init's namespace files, check the init is still the
//!   container's (start time), setns the pid namespace for children, fork;
//! - child: new session, join the container's cgroup, raise
//!   oom_score_adj, join the user namespace (when the container has one:
//!   first, so that it owns what the child does next), then
//!   ipc/uts/net/cgroup and last the mount namespace
//!   (whose root is the container's), the terminal when there is one
//!   (console.rs: the pty made in the container, its master sent over the
//!   console socket connected before the fork), rlimits, no_new_privs,
//!   umask, cwd,
//!   groups and ids, close fds, seccomp (before dropping capabilities when
//!   no_new_privs is off, so loading it may use CAP_SYS_ADMIN; after,
//!   when on, as late as possible), capabilities, HOME, execve.
//!
//! The child reports a failure before execve through a close-on-exec pipe:
//! EOF with no bytes means the process runs.
//!
//! A user namespace is joined here, never left to libcontainer: 0.7's
//! tenant joins every namespace of the container *but* the user one, so
//! its exec would run the process as the host's root among the
//! container's other namespaces. exec.rs refuses that path for a
//! container with a user namespace.
//!
//! Everything else (a terminal without a console socket, preserved fds,
//! time namespaces,
//! AppArmor, SELinux labels, I/O priority, scheduler, CPU affinity,
//! personality) goes through libcontainer: see [`unsupported`].

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use libcgroups::common::{AnyCgroupManager, CgroupManager};
use libcontainer::oci_spec::runtime::{LinuxSeccomp, Process};
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Pid};
use serde_json::Value;

use crate::bundle::process_start_time;

/// Set (to anything) in berth-runtime's environment, every exec takes
/// libcontainer's path: an operator's way back, and how the tests compare
/// the two paths.
pub const LIBCONTAINER_EXEC_ENV: &str = "BERTH_RUNTIME_LIBCONTAINER_EXEC";

/// Why this exec needs libcontainer's path, if it does. `spec` is the
/// container's config.json, `process` the exec's process.
pub fn unsupported(
    spec: &Value,
    process: &Value,
    tty: bool,
    console_socket: bool,
    preserve_fds: i32,
) -> Option<&'static str> {
    if std::env::var_os(LIBCONTAINER_EXEC_ENV).is_some() {
        return Some(LIBCONTAINER_EXEC_ENV);
    }
    if (tty || process["terminal"].as_bool() == Some(true)) && !console_socket {
        return Some("a terminal without a console socket");
    }
    if preserve_fds > 0 || std::env::var_os("LISTEN_FDS").is_some() {
        return Some("preserved fds");
    }
    if namespace_types(spec).any(|t| !JOINED.iter().any(|(kind, ..)| t == Some(*kind))) {
        return Some("a time namespace");
    }
    if crate::payload::has_libcontainer_attribute(process) {
        return Some("a process attribute libcontainer applies");
    }
    if crate::payload::is_set(&spec["linux"]["personality"]) {
        return Some("a personality");
    }
    None
}

/// What the child needs, prepared before the fork.
pub struct Plan {
    pub process: Process,
    pub seccomp: Option<LinuxSeccomp>,
    pub cgroup: CgroupJoin,
    /// The console socket, when the process has a terminal.
    pub console_socket: Option<PathBuf>,
}

/// How the child joins the container's cgroups.
pub enum CgroupJoin {
    /// The init's directories (cgroup_dirs.rs): a write to each.
    Dirs(Vec<PathBuf>),
    /// libcgroups' manager, when those could not be resolved.
    Manager(AnyCgroupManager),
}

impl CgroupJoin {
    fn join_self(&self) -> Result<()> {
        match self {
            CgroupJoin::Dirs(dirs) => {
                for d in dirs {
                    // "0": the writing process, in any pid namespace.
                    let procs = d.join("cgroup.procs");
                    std::fs::write(&procs, "0")
                        .with_context(|| format!("write {}", procs.display()))?;
                }
                Ok(())
            }
            CgroupJoin::Manager(m) => m
                .add_task(nix_lc::unistd::Pid::this())
                .map_err(|e| anyhow::anyhow!("{e}")),
        }
    }
}

/// The namespaces this path joins (OCI type, `/proc/<pid>/ns` file, flag),
/// in the order the child joins them: mount last, since once in it /proc
/// and the cgroup paths are the container's. Any other type listed in the
/// spec sends the exec to libcontainer.
const JOINED: [(&str, &str, CloneFlags); 7] = [
    ("pid", "pid", CloneFlags::CLONE_NEWPID),
    ("user", "user", CloneFlags::CLONE_NEWUSER),
    ("ipc", "ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", "uts", CloneFlags::CLONE_NEWUTS),
    ("network", "net", CloneFlags::CLONE_NEWNET),
    ("cgroup", "cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mount", "mnt", CloneFlags::CLONE_NEWNS),
];

/// The `type` of each of the spec's namespaces (None where it has none).
fn namespace_types(spec: &Value) -> impl Iterator<Item = Option<&str>> {
    spec.pointer("/linux/namespaces")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|n| n["type"].as_str())
}

/// Whether the container has a user namespace of its own.
pub fn has_user_namespace(spec: &Value) -> bool {
    namespace_types(spec).any(|t| t == Some("user"))
}

/// Namespace files of the init, in [`JOINED`]'s order.
struct Namespaces {
    pid: Option<OwnedFd>,
    rest: Vec<(OwnedFd, CloneFlags)>,
}

fn open_namespaces(spec: &Value, init: Pid) -> Result<Namespaces> {
    let mut ns = Namespaces {
        pid: None,
        rest: Vec::new(),
    };
    let listed: Vec<&str> = namespace_types(spec).flatten().collect();
    for (kind, file, flag) in JOINED {
        if !listed.contains(&kind) {
            continue;
        }
        let path = format!("/proc/{init}/ns/{file}");
        let fd: OwnedFd = File::open(&path)
            .with_context(|| format!("open {path}"))?
            .into();
        if flag == CloneFlags::CLONE_NEWPID {
            ns.pid = Some(fd);
        } else {
            ns.rest.push((fd, flag));
        }
    }
    Ok(ns)
}

/// Starts the process in the container whose init is `init` (started at
/// `init_start`, in clock ticks since boot); returns its pid once it has
/// called execve.
pub fn spawn(spec: &Value, init: Pid, init_start: Option<u64>, plan: Plan) -> Result<Pid> {
    let ns = open_namespaces(spec, init)?;
    // The files are of the init only if it still is the container's: a
    // recycled pid would hand us someone else's namespaces.
    if let Some(start) = init_start
        && process_start_time(init.as_raw()) != Some(start)
    {
        bail!("the container's init (pid {init}) has exited");
    }
    if let Some(pid_ns) = &ns.pid {
        // For children only: this process stays where it is.
        nix::sched::setns(pid_ns.as_fd(), CloneFlags::CLONE_NEWPID)
            .context("join the container's pid namespace")?;
    }
    // A host path: connected before the child leaves the host's mounts.
    let console = plan
        .console_socket
        .as_deref()
        .map(crate::console::connect)
        .transpose()?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    // SAFETY: berth-runtime is single-threaded (main.rs), so the child may
    // allocate and use everything the parent set up.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        ForkResult::Child => {
            drop(err_r);
            let err = match child(&ns, &plan, console.as_ref()) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let mut w = File::from(err_w);
            let _ = w.write_all(format!("{err:#}").as_bytes());
            // SAFETY: leaves without running the parent's exit handlers.
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => {
            drop(err_w);
            drop(console);
            let mut msg = String::new();
            let read = File::from(err_r).read_to_string(&mut msg);
            if read.is_ok() && msg.is_empty() {
                return Ok(child);
            }
            let _ = nix::sys::wait::waitpid(child, None);
            match read {
                Ok(_) => bail!("{msg}"),
                Err(e) => Err(e).context("read the exec'd process's setup result"),
            }
        }
    }
}

/// Never returns on success: the process image is replaced.
fn child(
    ns: &Namespaces,
    plan: &Plan,
    console: Option<&OwnedFd>,
) -> Result<std::convert::Infallible> {
    let p = &plan.process;
    nix::unistd::setsid().context("setsid")?;
    plan.cgroup
        .join_self()
        .context("join the container's cgroups")?;
    if let Some(adj) = p.oom_score_adj() {
        // Only ever raised (exec.rs clamps it to this process's own).
        std::fs::write("/proc/self/oom_score_adj", adj.to_string()).context("set oom_score_adj")?;
    }
    for (fd, flag) in &ns.rest {
        nix::sched::setns(fd.as_fd(), *flag).with_context(|| format!("setns {flag:?}"))?;
    }
    if let Some(socket) = console {
        let size = p
            .console_size()
            .map(|b| (clamp_u16(b.height()), clamp_u16(b.width())));
        crate::console::take_terminal(socket, size).context("set up the terminal")?;
    }
    crate::payload::setup_and_exec(p, plan.seccomp.as_ref(), || Ok(()))
}

fn clamp_u16(v: u64) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(namespaces: &[&str]) -> Value {
        json!({"linux": {"namespaces": namespaces.iter().map(|t| json!({"type": t})).collect::<Vec<_>>()}})
    }

    #[test]
    fn the_common_exec_is_supported() {
        let s = spec(&["pid", "network", "ipc", "uts", "mount", "cgroup"]);
        let p = json!({"args": ["sh"], "cwd": "/", "apparmorProfile": "", "selinuxLabel": null});
        assert_eq!(unsupported(&s, &p, false, false, 0), None);
    }

    #[test]
    fn a_user_namespace_is_joined_here_first() {
        let s = spec(&["user", "pid", "network", "mount"]);
        let p = json!({"args": ["sh"], "cwd": "/"});
        assert_eq!(unsupported(&s, &p, false, false, 0), None);
        assert!(has_user_namespace(&s));
        assert!(!has_user_namespace(&spec(&["pid", "mount"])));
        let kinds: Vec<&str> = JOINED.iter().map(|(k, ..)| *k).collect();
        assert_eq!(kinds[..2], ["pid", "user"], "user before every joined one");
        assert_eq!(kinds.last(), Some(&"mount"));
    }

    #[test]
    fn a_terminal_through_a_console_socket_is_supported() {
        let s = spec(&["user", "pid", "mount"]);
        let p = json!({"args": ["sh"], "terminal": true});
        assert_eq!(unsupported(&s, &p, true, true, 0), None);
        assert_eq!(unsupported(&s, &p, false, true, 0), None);
    }

    #[test]
    fn terminals_fds_and_time_namespaces_go_to_libcontainer() {
        let s = spec(&["pid", "mount"]);
        let p = json!({"args": ["sh"]});
        assert!(unsupported(&s, &p, true, false, 0).is_some());
        assert!(unsupported(&s, &json!({"terminal": true}), false, false, 0).is_some());
        assert!(unsupported(&s, &p, false, false, 2).is_some());
        assert!(unsupported(&spec(&["time"]), &p, false, false, 0).is_some());
        assert!(unsupported(&s, &json!({"apparmorProfile": "x"}), false, false, 0).is_some());
        let mut with_personality = s.clone();
        with_personality["linux"]["personality"] = json!({"domain": "LINUX32"});
        assert!(unsupported(&with_personality, &p, false, false, 0).is_some());
    }
}
