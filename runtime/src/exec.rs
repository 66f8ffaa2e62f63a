//! exec: a process in a running container.
//!
//! The process is always handed to libcontainer as a process JSON file:
//! either the caller's `--process`, or (as runc does) the container's own
//! `process` with the command, env, cwd, tty and user from the flags, so an
//! exec runs as the container's user with its capabilities and rlimits.
//!
//! libcontainer 0.7 drops the container's seccomp profile for exec'd
//! processes (its tenant spec keeps only namespaces and cgroupsPath from
//! `linux`), so [`SeccompExecutor`] loads that profile itself right before
//! execve.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use libcontainer::container::ContainerStatus;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::oci_spec::runtime::{LinuxSeccomp, Spec};
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde_json::Value;

use crate::Global;
use crate::bundle::{current_oom_score_adj, write_atomic};
use crate::commands::{load, status_name};
use crate::log;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// OCI process JSON; the command and the flags below are then ignored.
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Write the exec'd process's pid here (atomically).
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Return once the process runs instead of waiting for it.
    #[arg(short, long)]
    detach: bool,
    /// Unix socket that receives the pty master (with --tty and --detach).
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long)]
    cwd: Option<String>,
    /// KEY=VALUE added to (or replacing in) the container's environment.
    #[arg(short, long)]
    env: Vec<String>,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    tty: bool,
    /// `UID[:GID]` to run as.
    #[arg(short, long)]
    user: Option<String>,
    /// Pass N extra fds (from 3) to the process.
    #[arg(long, default_value_t = 0)]
    preserve_fds: i32,
    id: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Removes the temporary process file.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Runs the process; returns the exit code for this runtime: 0 when
/// detached, else the process's status (128+signal when killed).
pub fn exec(g: &Global, a: ExecArgs) -> Result<i32> {
    let id = a.id.clone();
    exec_inner(g, a).with_context(|| format!("exec in container {id}"))
}

fn exec_inner(g: &Global, a: ExecArgs) -> Result<i32> {
    let (c, sidecar) = load(g, &a.id)?;
    if c.status() != ContainerStatus::Running {
        bail!("cannot exec in a {} container", status_name(c.status()));
    }
    let config_path = c.bundle().join("config.json");
    let spec: Value = serde_json::from_slice(
        &fs::read(&config_path).with_context(|| format!("read {}", config_path.display()))?,
    )
    .with_context(|| format!("parse {}", config_path.display()))?;

    let mut process = match &a.process {
        Some(path) => serde_json::from_slice::<Value>(
            &fs::read(path).with_context(|| format!("read {}", path.display()))?,
        )
        .with_context(|| format!("parse {}", path.display()))?,
        None => process_from_flags(&spec["process"], &a)?,
    };
    if !process.is_object() {
        bail!("process: not a JSON object");
    }
    clamp_oom(&mut process);
    crate::bundle::drop_false_no_new_privileges(Some(&mut process));

    let seccomp: Option<LinuxSeccomp> = match spec.pointer("/linux/seccomp") {
        Some(v) if !v.is_null() => {
            Some(serde_json::from_value(v.clone()).context("parse the container's linux.seccomp")?)
        }
        _ => None,
    };

    if let Some(why) = crate::setns_exec::unsupported(
        &spec,
        &process,
        a.tty,
        a.console_socket.is_some(),
        a.preserve_fds,
    ) {
        if crate::setns_exec::has_user_namespace(&spec) {
            // libcontainer 0.7's tenant does not join the user namespace:
            // the process would run as the host's root (setns_exec.rs).
            bail!(
                "exec in container {} needs {why}, which berth-runtime cannot give inside a user namespace",
                a.id
            );
        }
        log::debug(&format!(
            "exec in container {}: libcontainer's path for {why}",
            a.id
        ));
    } else {
        let init = c
            .pid()
            .map(|p| Pid::from_raw(p.as_raw()))
            .with_context(|| format!("container {} has no init pid", a.id))?;
        let plan = crate::setns_exec::Plan {
            process: serde_json::from_value(process).context("parse the process")?,
            seccomp,
            cgroup: match crate::cgroup_dirs::of_process(init.as_raw()) {
                Ok(dirs) => crate::setns_exec::CgroupJoin::Dirs(dirs),
                Err(e) => {
                    log::debug(&format!(
                        "exec: the init's cgroups ({e:#}): libcgroups' manager"
                    ));
                    crate::setns_exec::CgroupJoin::Manager(crate::commands::cgroup_manager(&c)?)
                }
            },
            console_socket: a.console_socket.clone(),
        };
        let init_start = sidecar.read_meta().init_start;
        let pid = crate::setns_exec::spawn(&spec, init, init_start, plan)?;
        return started(&a, pid);
    }

    let file = TempFile(
        sidecar
            .dir
            .join(format!("exec-{}.json", std::process::id())),
    );
    fs::create_dir_all(&sidecar.dir)
        .with_context(|| format!("create {}", sidecar.dir.display()))?;
    write_atomic(&file.0, process.to_string().as_bytes(), 0o600)?;

    let pid = ContainerBuilder::new(a.id.clone(), SyscallType::default())
        .with_root_path(&g.root)?
        .with_console_socket(a.console_socket.as_ref())
        .with_preserved_fds(a.preserve_fds)
        .with_executor(SeccompExecutor { seccomp })
        .as_tenant()
        .with_process(Some(&file.0))
        .with_detach(a.detach)
        .build()?
        .as_raw();
    drop(file);
    started(&a, Pid::from_raw(pid))
}

/// The process runs: its pid file, then (unless detached) its exit.
fn started(a: &ExecArgs, pid: Pid) -> Result<i32> {
    if let Some(pid_file) = &a.pid_file {
        write_atomic(pid_file, pid.to_string().as_bytes(), 0o644)?;
    }
    log::debug(&format!("exec in container {}: pid {pid}", a.id));
    if a.detach {
        return Ok(0);
    }
    wait_forwarding_signals(pid)
}

/// The container's process with the command line's overrides, as runc builds
/// an exec process without `--process`.
fn process_from_flags(base: &Value, a: &ExecArgs) -> Result<Value> {
    if a.command.is_empty() {
        bail!("no command given (and no --process)");
    }
    let mut p = if base.is_object() {
        base.clone()
    } else {
        serde_json::json!({"cwd": "/", "user": {"uid": 0, "gid": 0}})
    };
    p["args"] = serde_json::json!(a.command);
    p["terminal"] = Value::Bool(a.tty);
    let mut env: Vec<String> = p["env"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for kv in &a.env {
        let key = kv.split('=').next().unwrap_or(kv);
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p["env"] = serde_json::json!(env);
    if let Some(cwd) = &a.cwd {
        p["cwd"] = Value::String(cwd.clone());
    }
    if let Some(user) = &a.user {
        let (uid, gid) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user.as_str(), None),
        };
        let uid: u32 = uid
            .parse()
            .with_context(|| format!("--user {user:?}: uid"))?;
        let gid: u32 = match gid {
            Some(g) => g.parse().with_context(|| format!("--user {user:?}: gid"))?,
            None => 0,
        };
        p["user"] = serde_json::json!({"uid": uid, "gid": gid});
    }
    // Not a tty: the console size belongs to the container's own terminal.
    if let Some(o) = p.as_object_mut() {
        o.remove("consoleSize");
    }
    Ok(p)
}

/// libcontainer writes the process's oomScoreAdj in this process before
/// forking; lowering it needs CAP_SYS_RESOURCE, so a lower value is clamped.
fn clamp_oom(process: &mut Value) {
    if let (Some(want), Some(cur)) = (
        process.get("oomScoreAdj").and_then(Value::as_i64),
        current_oom_score_adj(),
    ) && want < cur
    {
        log::warn(&format!(
            "process.oomScoreAdj {want} is below the runtime's {cur} (lowering needs CAP_SYS_RESOURCE): using {cur}"
        ));
        process["oomScoreAdj"] = Value::from(cur);
    }
}

/// Waits for the exec'd process (a child of this one: libcontainer clones it
/// with CLONE_PARENT), forwarding the usual signals to it, as runc does.
fn wait_forwarding_signals(pid: Pid) -> Result<i32> {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        set.add(s);
    }
    // Blocked only now: the child must not inherit the mask.
    set.thread_block().context("block signals")?;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => {}
            Err(e) => return Err(e).with_context(|| format!("wait for pid {pid}")),
        }
        let sig = set.wait().context("wait for signals")?;
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(pid, sig);
        }
    }
}

/// The default executor, plus the container's seccomp profile loaded right
/// before execve (libcontainer 0.7 applies none to exec'd processes).
#[derive(Clone)]
struct SeccompExecutor {
    seccomp: Option<LinuxSeccomp>,
}

impl Executor for SeccompExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if let Some(seccomp) = &self.seccomp {
            crate::seccomp::load(seccomp)?;
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}
