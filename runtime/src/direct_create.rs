//! create without libcontainer's process chain, for the common container
//! (no terminal, no preserved fds, no user or time namespace, no hooks).
//!
//! libcontainer 0.7 creates a container through three processes (this
//! one, an intermediate that joins the cgroups and a pid namespace, the
//! init) talking over channels, and its init sets up the rootfs through
//! pathrs: ~8.5 ms of the ~11 ms CreateContainer here, against a quarter
//! of containerd's Create+Start as the goal. This path does the same work
//! with two processes:
//!
//! - this process: the container's state directory and youki config (so
//!   every other command, libcontainer's included, loads the container
//!   as its own), the notify socket `start` connects to, the pid
//!   namespace (joined or unshared, for the child), fork; then the
//!   child's cgroups (libcgroups: created, joined, resources applied) and
//!   oom_score_adj, while the child goes on with its namespaces and first
//!   mounts; on the child's report, the state `created` with its pid.
//! - the child, pid 1 of a new pid namespace or a member of the pod's:
//!   new session, the other namespaces joined or unshared (cgroup once the
//!   runtime has put it in its cgroups, so their root is the container's),
//!   hostname, the rootfs
//!   (rootfs.rs), pivot_root, then payload.rs's steps up to execve, where
//!   it reports ready and waits for `start` on the notify socket.
//!
//! A setup failure comes back through a close-on-exec pipe as text; the
//! child is killed and reaped and its cgroups removed before the error is
//! returned. Everything else goes through libcontainer: see
//! [`unsupported`]; `BERTH_RUNTIME_LIBCONTAINER_CREATE` set sends every
//! create there.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use libcgroups::common::{CgroupConfig, CgroupManager, ControllerOpt, create_cgroup_manager};
use libcontainer::config::YoukiConfig;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::notify_socket::{NOTIFY_FILE, NotifyListener};
use libcontainer::oci_spec::runtime::{LinuxNamespaceType, Spec};
use libcontainer::syscall::syscall::create_syscall;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::unistd::ForkResult;
use serde_json::Value;

/// Set (to anything) in berth-runtime's environment, every create takes
/// libcontainer's path: an operator's way back, and how the tests compare
/// the two paths.
pub const LIBCONTAINER_CREATE_ENV: &str = "BERTH_RUNTIME_LIBCONTAINER_CREATE";

/// The namespaces this path handles (OCI type, clone flag).
const NAMESPACES: [(&str, CloneFlags); 6] = [
    ("pid", CloneFlags::CLONE_NEWPID),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("network", CloneFlags::CLONE_NEWNET),
    ("mount", CloneFlags::CLONE_NEWNS),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
];

/// Why this create needs libcontainer's path, if it does. `spec` is the
/// sidecar's config.json.
pub fn unsupported(
    spec: &Value,
    console_socket: bool,
    preserve_fds: i32,
    no_pivot: bool,
) -> Option<&'static str> {
    if std::env::var_os(LIBCONTAINER_CREATE_ENV).is_some() {
        return Some(LIBCONTAINER_CREATE_ENV);
    }
    let set = crate::payload::is_set;
    let process = &spec["process"];
    if console_socket || process["terminal"].as_bool() == Some(true) {
        return Some("a terminal");
    }
    if preserve_fds > 0 || std::env::var_os("LISTEN_FDS").is_some() {
        return Some("preserved fds");
    }
    if no_pivot {
        return Some("--no-pivot");
    }
    let namespaces = spec
        .pointer("/linux/namespaces")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut new_mount_ns = false;
    for ns in namespaces {
        let kind = ns["type"].as_str().unwrap_or_default();
        if !NAMESPACES.iter().any(|(k, _)| *k == kind) {
            return Some("a user or time namespace");
        }
        if kind == "mount" {
            new_mount_ns = !set(&ns["path"]);
        }
    }
    if !new_mount_ns {
        return Some("no new mount namespace");
    }
    if set(&spec["hooks"]) {
        return Some("hooks");
    }
    if crate::payload::has_libcontainer_attribute(process) {
        return Some("a process attribute libcontainer applies");
    }
    for key in [
        "personality",
        "mountLabel",
        "intelRdt",
        "memoryPolicy",
        "netDevices",
        "uidMappings",
        "gidMappings",
        "timeOffsets",
    ] {
        if set(&spec["linux"][key]) {
            return Some("a linux setting libcontainer applies");
        }
    }
    if set(&spec["linux"]["seccomp"]["listenerPath"]) {
        return Some("a seccomp listener");
    }
    let mounts = spec["mounts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for m in mounts {
        let idmap = m["options"].as_array().is_some_and(|o| {
            o.iter()
                .any(|o| matches!(o.as_str(), Some("idmap" | "ridmap")))
        });
        if idmap || set(&m["uidMappings"]) || set(&m["gidMappings"]) {
            return Some("an idmapped mount");
        }
    }
    None
}

/// Namespaces the child joins (files) and unshares (flags).
struct Namespaces {
    join: Vec<(OwnedFd, CloneFlags)>,
    new: CloneFlags,
}

/// Creates container `id` from `spec`, the sidecar config at `config` (whose
/// directory libcontainer knows as the bundle) with its state in `dir`;
/// returns the init's pid once it waits for `start`.
pub fn create(id: &str, spec: Spec, config: &Path, dir: &Path) -> Result<i32> {
    let linux = spec
        .linux()
        .as_ref()
        .context("the spec has no linux section")?;
    let root = spec.root().as_ref().context("the spec has no root")?;
    let rootfs = root.path().clone();
    if !rootfs.is_dir() {
        bail!("rootfs {}: No such file or directory", rootfs.display());
    }
    let process = spec.process().as_ref().context("the spec has no process")?;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("create {}", dir.display()))?;
    let youki = YoukiConfig::from_spec(&spec, id).context("container config")?;
    youki.save(dir).context("save the container config")?;
    let listener =
        NotifyListener::new(&dir.join(NOTIFY_FILE)).context("listen on the notify socket")?;

    let mut ns = Namespaces {
        join: Vec::new(),
        new: CloneFlags::empty(),
    };
    for n in linux.namespaces().as_deref().unwrap_or_default() {
        let kind = n.typ();
        let flag = match kind {
            LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
            LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
            LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            other => bail!("{other:?} namespaces are not handled here"),
        };
        match (n.path(), flag) {
            (Some(path), CloneFlags::CLONE_NEWPID) => {
                let fd =
                    fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
                // For children only: this process stays where it is.
                nix::sched::setns(fd.as_fd(), flag).context("join the pid namespace")?;
            }
            (None, CloneFlags::CLONE_NEWPID) => {
                nix::sched::unshare(flag).context("new pid namespace")?;
            }
            (Some(path), _) => {
                let fd =
                    fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
                ns.join.push((fd.into(), flag));
            }
            (None, _) => ns.new |= flag,
        }
    }

    let cgroup = create_cgroup_manager(CgroupConfig {
        cgroup_path: youki.cgroup_path.clone(),
        systemd_cgroup: false,
        container_name: id.to_string(),
    })
    .with_context(|| format!("cgroup {}", youki.cgroup_path.display()))?;

    let (go_r, go_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    let (report_r, report_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    // SAFETY: berth-runtime is single-threaded (main.rs), so the child may
    // allocate and use everything the parent set up.
    let child = match unsafe { nix::unistd::fork() }.context("fork")? {
        ForkResult::Child => {
            drop(go_w);
            drop(report_r);
            let mut report = Some(fs::File::from(report_w));
            let err = match init(&spec, &rootfs, &ns, go_r, &listener, &mut report) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            match report.as_mut() {
                Some(w) => {
                    let _ = w.write_all(format!("{err:#}").as_bytes());
                }
                // After ready: only the container's stderr is left.
                None => eprintln!("berth-runtime: container {id}: {err:#}"),
            }
            // SAFETY: leaves without running the parent's exit handlers.
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(go_r);
    drop(report_w);
    let forked = std::time::Instant::now();
    let mut cgroup_time = std::time::Duration::ZERO;
    let setup = || -> Result<()> {
        let pid = nix_lc::unistd::Pid::from_raw(child.as_raw());
        cgroup
            .add_task(pid)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("put the init in its cgroup")?;
        if let Some(resources) = linux.resources() {
            cgroup
                .apply(&ControllerOpt {
                    resources,
                    disable_oom_killer: false,
                    oom_score_adj: None,
                    freezer_state: None,
                })
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("apply cgroup resources")?;
        }
        if let Some(adj) = process.oom_score_adj() {
            // Only ever raised (bundle.rs clamps it to this process's own).
            fs::write(format!("/proc/{child}/oom_score_adj"), adj.to_string())
                .context("set oom_score_adj")?;
        }
        cgroup_time = forked.elapsed();
        fs::File::from(go_w)
            .write_all(b"g")
            .context("let the init go on")?;
        let mut msg = Vec::new();
        fs::File::from(report_r)
            .read_to_end(&mut msg)
            .context("read the init's report")?;
        match msg.as_slice() {
            [0] => Ok(()),
            [] => bail!("the container's init exited during setup"),
            text => bail!("{}", String::from_utf8_lossy(text)),
        }
    };
    let result = setup();
    crate::log::debug(&format!(
        "create container {id}: cgroups {:?}, init ready {:?} after the fork",
        cgroup_time,
        forked.elapsed()
    ));
    if let Err(e) = result {
        let _ = kill(child, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(child, None);
        if let Err(re) = cgroup.remove() {
            crate::log::warn(&format!("remove the cgroup of a failed create: {re}"));
        }
        return Err(e);
    }
    let bundle: PathBuf = config.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut c = Container::new(id, ContainerStatus::Creating, None, &bundle, dir)
        .context("container state")?;
    c.set_annotations(spec.annotations().clone())
        .set_systemd(false)
        .set_status(ContainerStatus::Created)
        .set_creator(nix::unistd::geteuid().as_raw())
        .set_pid(child.as_raw())
        .save()
        .context("save the container state")?;
    Ok(child.as_raw())
}

/// The container's init, up to execve. `report` is taken when it reports
/// ready.
fn init(
    spec: &Spec,
    rootfs: &Path,
    ns: &Namespaces,
    go: OwnedFd,
    listener: &NotifyListener,
    report: &mut Option<fs::File>,
) -> Result<std::convert::Infallible> {
    nix::unistd::setsid().context("setsid")?;
    for (fd, flag) in &ns.join {
        nix::sched::setns(fd.as_fd(), *flag).with_context(|| format!("setns {flag:?}"))?;
    }
    nix::sched::unshare(ns.new - CloneFlags::CLONE_NEWCGROUP).context("new namespaces")?;
    // The runtime puts this process in its cgroups meanwhile (both cores
    // work); the rootfs setup waits for that before the first step that
    // depends on them: the cgroup filesystem, which shows this process's
    // own cgroups, or the device nodes, which the devices cgroup governs.
    let mut go = Some(go);
    let mut joined = || -> Result<()> {
        let Some(go) = go.take() else {
            return Ok(());
        };
        let mut byte = [0u8; 1];
        if fs::File::from(go)
            .read(&mut byte)
            .context("wait for the runtime")?
            == 0
        {
            bail!("the runtime gave up before the init joined its cgroups");
        }
        if ns.new.contains(CloneFlags::CLONE_NEWCGROUP) {
            // Now in the container's cgroups: they become its root.
            nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).context("new cgroup namespace")?;
        }
        Ok(())
    };
    let sys = create_syscall();
    if ns.new.contains(CloneFlags::CLONE_NEWUTS) {
        if let Some(h) = spec.hostname() {
            sys.set_hostname(h).context("set the hostname")?;
        }
        if let Some(d) = spec.domainname() {
            sys.set_domainname(d).context("set the domain name")?;
        }
    }
    let linux = spec
        .linux()
        .as_ref()
        .context("the spec has no linux section")?;
    let cgroup_ns = linux
        .namespaces()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Cgroup);
    crate::rootfs::prepare(sys.as_ref(), spec, rootfs, cgroup_ns, &mut joined)
        .context("prepare the rootfs")?;
    joined()?;
    crate::rootfs::pivot(sys.as_ref(), rootfs)?;
    let readonly = spec.root().as_ref().and_then(|r| r.readonly()) == Some(true);
    crate::rootfs::finish(sys.as_ref(), linux, readonly)?;
    let process = spec.process().as_ref().context("the spec has no process")?;
    crate::payload::setup_and_exec(process, linux.seccomp().as_ref(), || {
        if let Some(mut w) = report.take() {
            w.write_all(&[0]).context("report ready")?;
        }
        listener
            .wait_for_container_start()
            .context("wait for start")?;
        listener.close().context("close the notify socket")?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn common() -> Value {
        json!({
            "process": {"args": ["sh"], "terminal": false, "apparmorProfile": ""},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {"namespaces": [
                {"type": "pid"}, {"type": "mount"}, {"type": "cgroup"},
                {"type": "network", "path": "/var/run/netns/x"},
                {"type": "ipc", "path": "/proc/1/ns/ipc"}, {"type": "uts"}
            ]},
            "hooks": {}
        })
    }

    #[test]
    fn the_common_create_is_supported() {
        assert_eq!(unsupported(&common(), false, 0, false), None);
    }

    #[test]
    fn everything_else_goes_to_libcontainer() {
        let s = common();
        assert!(unsupported(&s, true, 0, false).is_some());
        assert!(unsupported(&s, false, 1, false).is_some());
        assert!(unsupported(&s, false, 0, true).is_some());
        let with = |pointer: &str, v: Value| {
            let mut s = common();
            *s.pointer_mut(pointer).unwrap() = v;
            unsupported(&s, false, 0, false)
        };
        assert!(with("/process/terminal", json!(true)).is_some());
        assert!(with("/process/apparmorProfile", json!("p")).is_some());
        assert!(with("/hooks", json!({"prestart": [{"path": "/bin/true"}]})).is_some());
        assert!(with("/linux/namespaces/0", json!({"type": "user"})).is_some());
        assert!(
            with(
                "/linux/namespaces/1",
                json!({"type": "mount", "path": "/x"})
            )
            .is_some()
        );
        assert!(with("/linux/namespaces/1", json!({"type": "time"})).is_some());
        let mut s = common();
        s["linux"]["personality"] = json!({"domain": "LINUX32"});
        assert!(unsupported(&s, false, 0, false).is_some());
        let mut s = common();
        s["mounts"][0]["options"] = json!(["rbind", "idmap"]);
        assert!(unsupported(&s, false, 0, false).is_some());
        let mut s = common();
        s["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x"});
        assert!(unsupported(&s, false, 0, false).is_some());
    }
}
