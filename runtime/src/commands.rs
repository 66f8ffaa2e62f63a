//! create, start, state, kill, delete, update, list, features.

use std::fs;
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use libcgroups::common::{
    AnyCgroupManager, CgroupConfig, CgroupManager, ControllerOpt, FreezerState,
    create_cgroup_manager,
};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::oci_spec::runtime::LinuxResources;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::Global;
use crate::bundle::{self, Meta, Sidecar, process_start_time, write_atomic};
use crate::log;

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Bundle directory (holds config.json); default: the current directory.
    #[arg(short, long)]
    bundle: Option<PathBuf>,
    /// Write the container init's pid here (atomically).
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master when process.terminal is set.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root.
    #[arg(long)]
    no_pivot: bool,
    /// Pass N extra fds (from 3) to the container process.
    #[arg(long, default_value_t = 0)]
    preserve_fds: i32,
    /// Accepted for runc compatibility; ignored.
    #[arg(long, hide = true)]
    no_new_keyring: bool,
    id: String,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal all processes of the container's cgroup.
    #[arg(short, long)]
    all: bool,
    id: String,
    /// Signal name (TERM, SIGTERM) or number; default SIGTERM.
    signal: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Kill a running container first; an unknown id is not an error.
    #[arg(short, long)]
    force: bool,
    id: String,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// OCI LinuxResources JSON file, `-` for stdin.
    #[arg(short, long)]
    resources: PathBuf,
    id: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// table or json.
    #[arg(short, long, default_value = "table")]
    format: String,
    /// Only ids.
    #[arg(short, long)]
    quiet: bool,
}

/// Rejects ids that are not a plain file name (the same characters
/// libcontainer accepts).
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if !ok {
        bail!("invalid container id {id:?}");
    }
    Ok(())
}

pub fn status_name(s: ContainerStatus) -> &'static str {
    match s {
        ContainerStatus::Creating => "creating",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Stopped => "stopped",
        ContainerStatus::Paused => "paused",
    }
}

/// Loads a container's state. A recorded init pid that now belongs to another
/// process (its start time differs) is dropped, so the container reads as
/// stopped and nothing signals the stranger.
pub fn load(g: &Global, id: &str) -> Result<(Container, Sidecar)> {
    validate_id(id)?;
    let dir = g.root.join(id);
    if !dir.join("state.json").exists() {
        bail!("container {id} does not exist");
    }
    // libcontainer's status refresh opens /proc/<pid> and then reads its
    // stat: an init exiting between the two fails the load. Once the
    // process is gone the refresh reads it as stopped, so a retry settles.
    let mut loaded = Container::load(dir.clone());
    for _ in 0..3 {
        if loaded.is_ok() {
            break;
        }
        loaded = Container::load(dir.clone());
    }
    let mut c = loaded.with_context(|| format!("load container {id}"))?;
    let sidecar = Sidecar::new(&g.root, id);
    if let Some(pid) = c.pid()
        && c.status() != ContainerStatus::Stopped
        && let Some(start) = sidecar.read_meta().init_start
        && process_start_time(pid.as_raw()) != Some(start)
    {
        log::debug(&format!(
            "container {id}: pid {pid} is no longer its init (start time changed)"
        ));
        c.state.pid = None;
        c.set_status(ContainerStatus::Stopped);
        c.save()
            .with_context(|| format!("save state of container {id}"))?;
    }
    Ok((c, sidecar))
}

/// Removes what a failed create left behind, unless disarmed.
struct CreateGuard {
    dir: PathBuf,
    sidecar: Sidecar,
    armed: bool,
}

impl Drop for CreateGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.dir.join("state.json").exists()
            && let Ok(mut c) = Container::load(self.dir.clone())
        {
            let _ = kill_all_and_wait(&c, Duration::from_secs(5));
            if let Err(e) = c.delete(true) {
                log::warn(&format!("clean up after failed create: {e}"));
            }
        }
        if self.dir.exists()
            && let Err(e) = fs::remove_dir_all(&self.dir)
        {
            log::warn(&format!(
                "clean up after failed create: remove {}: {e}",
                self.dir.display()
            ));
        }
        self.sidecar.remove();
    }
}

pub fn create(g: &Global, a: CreateArgs) -> Result<()> {
    let id = a.id.as_str();
    create_inner(g, &a).with_context(|| format!("create container {id}"))
}

fn create_inner(g: &Global, a: &CreateArgs) -> Result<()> {
    let id = a.id.as_str();
    validate_id(id)?;
    let bundle_arg = match &a.bundle {
        Some(b) => b.clone(),
        None => std::env::current_dir().context("current directory")?,
    };
    let bundle = fs::canonicalize(&bundle_arg).map_err(|e| {
        anyhow::anyhow!("bundle {}: {}", bundle_arg.display(), bundle::io_words(&e))
    })?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&g.root)
        .with_context(|| format!("create root {}", g.root.display()))?;
    let dir = g.root.join(id);
    if dir.exists() {
        bail!("container {id} already exists");
    }
    let sidecar = Sidecar::new(&g.root, id);
    // A sidecar without a container is left from a create that crashed.
    sidecar.remove();
    let mut guard = CreateGuard {
        dir,
        sidecar: sidecar.clone(),
        armed: true,
    };

    let spec = bundle::prepare(&bundle, id, &sidecar, g.systemd_cgroup)?;
    let pid = match crate::direct_create::unsupported(
        &spec,
        a.console_socket.is_some(),
        a.preserve_fds,
        a.no_pivot,
    ) {
        None => {
            let spec = serde_json::from_value(spec).context("parse the container's config")?;
            crate::direct_create::create(id, spec, &sidecar.config(), &guard.dir)?
        }
        Some(why) => {
            log::debug(&format!(
                "create container {id}: libcontainer's path for {why}"
            ));
            let container = ContainerBuilder::new(id.to_string(), SyscallType::default())
                .with_root_path(&g.root)?
                .with_console_socket(a.console_socket.as_ref())
                .with_preserved_fds(a.preserve_fds)
                .as_init(&sidecar.dir)
                .with_systemd(false)
                .with_detach(true)
                .with_no_pivot(a.no_pivot)
                .build()?;
            container
                .pid()
                .context("libcontainer recorded no init pid")?
                .as_raw()
        }
    };
    sidecar.write_meta(&Meta {
        bundle: Some(bundle),
        init_start: process_start_time(pid),
    })?;
    if let Some(pid_file) = &a.pid_file {
        write_atomic(pid_file, pid.to_string().as_bytes(), 0o644)?;
    }
    guard.armed = false;
    log::debug(&format!("created container {id}: init pid {pid}"));
    Ok(())
}

pub fn start(g: &Global, id: &str) -> Result<()> {
    let (mut c, _) = load(g, id).with_context(|| format!("start container {id}"))?;
    match c.status() {
        ContainerStatus::Created => {}
        ContainerStatus::Stopped => {
            bail!("start container {id}: cannot start a container that has stopped")
        }
        s => bail!(
            "start container {id}: cannot start a container in the {} state",
            status_name(s)
        ),
    }
    c.start().with_context(|| format!("start container {id}"))
}

pub fn state(g: &Global, id: &str) -> Result<()> {
    let (c, sidecar) = load(g, id).with_context(|| format!("state of container {id}"))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&state_json(&c, &sidecar))?
    );
    Ok(())
}

fn state_json(c: &Container, sidecar: &Sidecar) -> serde_json::Value {
    let meta = sidecar.read_meta();
    let bundle = meta.bundle.unwrap_or_else(|| c.bundle().clone());
    let pid = match c.status() {
        ContainerStatus::Stopped => 0,
        _ => c.pid().map(|p| p.as_raw()).unwrap_or(0),
    };
    let rootfs = fs::read(c.bundle().join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.pointer("/root/path").cloned());
    serde_json::json!({
        "ociVersion": c.state.oci_version,
        "id": c.id(),
        "status": status_name(c.status()),
        "pid": pid,
        "bundle": bundle,
        "rootfs": rootfs,
        "created": c.created().map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
        "owner": "",
        "annotations": c.state.annotations.clone().unwrap_or_default(),
    })
}

pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| anyhow::anyhow!("invalid signal {s:?}"));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| anyhow::anyhow!("invalid signal {s:?}"))
}

pub fn kill(g: &Global, a: KillArgs) -> Result<()> {
    let id = a.id.as_str();
    let sig = parse_signal(a.signal.as_deref().unwrap_or("SIGTERM"))
        .with_context(|| format!("kill container {id}"))?;
    let (c, _) = load(g, id).with_context(|| format!("kill container {id}"))?;
    if a.all {
        return signal_all(&c, sig).with_context(|| format!("kill container {id}"));
    }
    let pid = match (c.status(), c.pid()) {
        (ContainerStatus::Stopped, _) | (_, None) => {
            bail!("kill container {id}: container not running")
        }
        (_, Some(pid)) => pid.as_raw(),
    };
    match signal::kill(Pid::from_raw(pid), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("kill container {id}: signal {sig} to pid {pid}")),
    }
}

pub(crate) fn cgroup_manager(c: &Container) -> Result<AnyCgroupManager> {
    let config = c.spec().context("load the container's config")?;
    create_cgroup_manager(CgroupConfig {
        cgroup_path: config.cgroup_path.clone(),
        systemd_cgroup: c.systemd(),
        container_name: c.id().to_string(),
    })
    .with_context(|| format!("cgroup {}", config.cgroup_path.display()))
}

fn cgroup_pids(m: &AnyCgroupManager) -> Result<Vec<i32>> {
    Ok(m.get_all_pids()
        .context("list the cgroup's processes")?
        .into_iter()
        .map(|p| p.as_raw())
        .collect())
}

/// Signals every process in the container's cgroup, frozen meanwhile so none
/// forks away.
fn signal_all(c: &Container, sig: Signal) -> Result<()> {
    let m = cgroup_manager(c)?;
    let frozen = m.freeze(FreezerState::Frozen).is_ok();
    let result = cgroup_pids(&m).map(|pids| {
        for pid in pids {
            let _ = signal::kill(Pid::from_raw(pid), sig);
        }
    });
    if frozen && let Err(e) = m.freeze(FreezerState::Thawed) {
        log::warn(&format!("thaw container {}: {e}", c.id()));
    }
    result
}

/// SIGKILLs everything in the container's cgroup and waits until it is empty,
/// so removing the cgroup does not race the dying processes.
fn kill_all_and_wait(c: &Container, timeout: Duration) -> Result<()> {
    let m = cgroup_manager(c)?;
    if cgroup_pids(&m).map(|p| p.is_empty()).unwrap_or(true) {
        return Ok(());
    }
    signal_all(c, Signal::SIGKILL)?;
    let deadline = Instant::now() + timeout;
    loop {
        let pids = cgroup_pids(&m)?;
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("processes {pids:?} still in the container's cgroup after SIGKILL");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn delete(g: &Global, a: DeleteArgs) -> Result<()> {
    let id = a.id.as_str();
    delete_inner(g, id, a.force).with_context(|| format!("delete container {id}"))
}

fn delete_inner(g: &Global, id: &str, force: bool) -> Result<()> {
    validate_id(id)?;
    let dir = g.root.join(id);
    let sidecar = Sidecar::new(&g.root, id);
    if !dir.join("state.json").exists() {
        // As runc: a directory without state (an aborted create) is removed;
        // an unknown id is an error unless --force.
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
        }
        sidecar.remove();
        if force {
            return Ok(());
        }
        bail!("container {id} does not exist");
    }
    let (mut c, sidecar) = load(g, id)?;
    match c.status() {
        ContainerStatus::Stopped | ContainerStatus::Created => {}
        s if !force => bail!(
            "cannot delete container {id} that is not stopped: {}",
            status_name(s)
        ),
        _ => {}
    }
    // Processes left in the cgroup (the init's, or without a pid namespace
    // any) die before the cgroup goes.
    if let Err(e) = kill_all_and_wait(&c, Duration::from_secs(10)) {
        log::warn(&format!("delete container {id}: {e:#}"));
    }
    c.delete(force)?;
    sidecar.remove();
    Ok(())
}

pub fn update(g: &Global, a: UpdateArgs) -> Result<()> {
    let id = a.id.as_str();
    update_inner(g, &a).with_context(|| format!("update container {id}"))
}

fn update_inner(g: &Global, a: &UpdateArgs) -> Result<()> {
    let data = if a.resources == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("read resources from stdin")?;
        buf
    } else {
        fs::read(&a.resources).with_context(|| format!("read {}", a.resources.display()))?
    };
    let resources: LinuxResources =
        serde_json::from_slice(&data).context("parse resources (OCI LinuxResources JSON)")?;
    let (c, _) = load(g, &a.id)?;
    if c.status() == ContainerStatus::Stopped {
        bail!("container not running");
    }
    let m = cgroup_manager(&c)?;
    m.apply(&ControllerOpt {
        resources: &resources,
        disable_oom_killer: resources
            .memory()
            .as_ref()
            .and_then(|m| m.disable_oom_killer())
            .unwrap_or(false),
        oom_score_adj: None,
        freezer_state: None,
    })
    .context("apply resources to the cgroup")?;
    Ok(())
}

pub fn list(g: &Global, a: ListArgs) -> Result<()> {
    let mut rows = Vec::new();
    let entries = match fs::read_dir(&g.root) {
        Ok(e) => e.flatten().collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("list {}", g.root.display())),
    };
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().join("state.json").exists() {
            continue;
        }
        match load(g, &name) {
            Ok((c, sidecar)) => rows.push(state_json(&c, &sidecar)),
            Err(e) => log::warn(&format!("list: {e:#}")),
        }
    }
    rows.sort_by(|x, y| x["id"].as_str().cmp(&y["id"].as_str()));
    if a.quiet {
        for r in &rows {
            println!("{}", r["id"].as_str().unwrap_or(""));
        }
    } else if a.format == "json" {
        println!("{}", serde_json::Value::Array(rows));
    } else {
        println!("ID\tPID\tSTATUS\tBUNDLE\tCREATED");
        for r in &rows {
            println!(
                "{}\t{}\t{}\t{}\t{}",
                r["id"].as_str().unwrap_or(""),
                r["pid"],
                r["status"].as_str().unwrap_or(""),
                r["bundle"].as_str().unwrap_or(""),
                r["created"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

pub fn features() -> Result<()> {
    let v = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.1",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["ro", "rw", "bind", "rbind", "nosuid", "nodev", "noexec", "relatime", "strictatime", "private", "rprivate", "shared", "rshared", "slave", "rslave", "rro", "rrw", "rnosuid", "rnodev", "rnoexec"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts", "time"],
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": true},
            "apparmor": {"enabled": true},
            "selinux": {"enabled": false}
        },
        "annotations": {
            "org.berth.runtime.systemd-cgroup": "cgroupfs paths named as systemd names them; no D-Bus units"
        }
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("sigkill").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn ids() {
        assert!(validate_id("abc-1.2_x+y").is_ok());
        for bad in ["", ".", "..", "a/b", "a b"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }
}
