//! A real berthd process for one test.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use berth_cli::client::{self, CriClient};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::env::{bin_path, mounts_under, scratch_dir};

/// How long berthd may take to become ready before the test fails.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Configures a [`Berthd`] before it starts.
#[derive(Debug, Clone)]
pub struct BerthdBuilder {
    tag: String,
    sections: BTreeMap<String, Vec<String>>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl BerthdBuilder {
    /// Sets `key = value` (value in TOML syntax) in `[section]`.
    pub fn config(mut self, section: &str, key: &str, value_toml: &str) -> Self {
        self.sections
            .entry(section.to_owned())
            .or_default()
            .push(format!("{key} = {value_toml}"));
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Starts berthd and waits until it reports ready.
    pub fn start(self) -> Berthd {
        let mut d = self.prepare();
        d.spawn_and_wait_ready();
        d
    }

    /// Prepares the scratch dir and config without starting berthd.
    pub fn prepare(self) -> Berthd {
        let dir = scratch_dir(&self.tag);
        let root_dir = dir.join("root");
        let state_dir = dir.join("state");
        let socket = state_dir.join("berth.sock");
        let cni_conf_dir = dir.join("net.d");
        fs::create_dir_all(&cni_conf_dir).unwrap();
        let mut sections = self.sections.clone();
        let q = |p: &Path| format!("{:?}", p.to_str().unwrap());
        let daemon = sections.entry("daemon".into()).or_default();
        for (k, v) in [
            ("root_dir", q(&root_dir)),
            ("state_dir", q(&state_dir)),
            ("socket", q(&socket)),
            ("shutdown_timeout", "\"5s\"".into()),
        ] {
            if !daemon.iter().any(|l| l.starts_with(&format!("{k} "))) {
                daemon.push(format!("{k} = {v}"));
            }
        }
        // Pods under a cgroup parent of this daemon's own, removed with it
        // (also when a test fails and leaves pods behind).
        let pod = sections.entry("pod".into()).or_default();
        let cgroup_parent = if pod
            .iter()
            .any(|l| l.starts_with("default_cgroup_parent ") || l.starts_with("cgroup_driver "))
        {
            None
        } else {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let parent = format!("/berth-e2e/{name}");
            pod.push(format!("default_cgroup_parent = {parent:?}"));
            Some(parent)
        };
        let cni = sections.entry("cni".into()).or_default();
        if !cni.iter().any(|l| l.starts_with("conf_dir ")) {
            cni.push(format!("conf_dir = {}", q(&cni_conf_dir)));
        }
        // The metrics endpoint on a free port (its address is written to
        // the state dir), so parallel daemons never collide on 9338.
        let metrics = sections.entry("metrics".into()).or_default();
        if !metrics.iter().any(|l| l.starts_with("address ")) {
            metrics.push("address = \"127.0.0.1:0\"".into());
        }
        let mut text = String::new();
        for (section, lines) in &sections {
            text += &format!("[{section}]\n{}\n\n", lines.join("\n"));
        }
        let config_path = dir.join("config.toml");
        fs::write(&config_path, text).unwrap();
        Berthd {
            log_path: dir.join("berthd.log"),
            notify_path: dir.join("notify.sock"),
            dir,
            root_dir,
            state_dir,
            socket,
            cni_conf_dir,
            config_path,
            cgroup_parent,
            args: self.args,
            env: self.env,
            child: None,
            last_exit_clean: true,
        }
    }
}

/// A berthd process with its own root dir, state dir and socket under a
/// scratch dir. Dropping it stops the daemon and fails the test if anything
/// it made is left behind (mounts, files in the state dir).
#[derive(Debug)]
pub struct Berthd {
    pub dir: PathBuf,
    pub root_dir: PathBuf,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    /// The cgroup parent of this daemon's pods (cgroupfs), unless the
    /// test's config chose one.
    pub cgroup_parent: Option<String>,
    notify_path: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    last_exit_clean: bool,
}

impl Berthd {
    pub fn builder(tag: &str) -> BerthdBuilder {
        BerthdBuilder {
            tag: tag.to_owned(),
            sections: BTreeMap::new(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Starts berthd with the default test config.
    pub fn start(tag: &str) -> Berthd {
        Self::builder(tag).start()
    }

    /// The berthd command line this instance uses.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(bin_path("berthd"));
        cmd.arg("--config").arg(&self.config_path).args(&self.args);
        cmd.env_remove("RUST_LOG").env_remove("NOTIFY_SOCKET");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn spawn(&self, notify: Option<&Path>) -> Child {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let mut cmd = self.command();
        if let Some(n) = notify {
            cmd.env("NOTIFY_SOCKET", n);
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawning berthd")
    }

    /// Starts the daemon and waits for its sd_notify READY=1.
    pub fn spawn_and_wait_ready(&mut self) {
        assert!(self.child.is_none(), "berthd already running");
        let _ = fs::remove_file(&self.notify_path);
        let notify = UnixDatagram::bind(&self.notify_path).expect("binding notify socket");
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut child = self.spawn(Some(&self.notify_path));
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut buf = [0u8; 512];
        loop {
            if let Ok(n) = notify.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
            {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("berthd exited before ready ({status}):\n{}", self.log());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("berthd not ready after {READY_TIMEOUT:?}:\n{}", self.log());
            }
        }
        drop(notify);
        let _ = fs::remove_file(&self.notify_path);
        self.child = Some(child);
    }

    /// Runs berthd expecting it to fail at startup; returns its status and output.
    pub fn run_expect_exit(&mut self) -> (ExitStatus, String) {
        let before = self.log().len();
        let mut child = self.spawn(None);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let log = self.log();
                return (status, log[before..].to_owned());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("berthd kept running, expected it to exit:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("berthd not running").id() as i32)
    }

    /// The daemon's combined stdout and stderr so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// A CRI client on the daemon's socket.
    pub async fn client(&self) -> CriClient {
        client::connect(&self.socket, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log()))
    }

    /// Sends `signal` and waits up to `within` for the exit. Panics if the
    /// daemon is still running then.
    pub fn signal_and_wait(&mut self, signal: Signal, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("berthd not running");
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.last_exit_clean = status.success();
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.last_exit_clean = false;
                panic!(
                    "berthd did not exit within {within:?} of {signal}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, and the exit status (within 10 s).
    pub fn stop(&mut self) -> ExitStatus {
        self.signal_and_wait(Signal::SIGTERM, Duration::from_secs(10))
    }

    /// SIGKILL: the daemon dies with no chance to clean up.
    pub fn kill9(&mut self) {
        self.signal_and_wait(Signal::SIGKILL, Duration::from_secs(10));
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// What is left in the state dir; after a clean stop it must be nothing.
    fn leftovers(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for m in mounts_under(&self.dir) {
            problems.push(format!("mount left behind: {}", m.display()));
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        if self.last_exit_clean {
            // Empty directories are structure; anything else is a leak.
            for p in files_under(&self.state_dir) {
                problems.push(format!("left in state dir: {}", p.display()));
            }
        }
        problems
    }
}

impl Berthd {
    /// Where the metrics endpoint listens (from `<state_dir>/metrics.addr`).
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        let text = fs::read_to_string(self.state_dir.join("metrics.addr"))
            .expect("berthd wrote metrics.addr (is [metrics] address set?)");
        text.trim().parse().expect("metrics.addr holds host:port")
    }

    /// The cgroup of a pod of this daemon in the hierarchy mounted at
    /// `hierarchy` (e.g. /sys/fs/cgroup/pids), with the default parent.
    pub fn pod_cgroup(&self, hierarchy: &str, pod: &str) -> PathBuf {
        let parent = self.cgroup_parent.as_deref().unwrap_or("/berth");
        Path::new(hierarchy)
            .join(parent.trim_start_matches('/'))
            .join(format!("berth-{pod}"))
    }
}

/// Removes the cgroup `parent` and everything under it from every
/// hierarchy (its processes are gone: the shims killed them), then the
/// shared /berth-e2e parent if nothing else uses it.
fn remove_cgroup_tree(parent: &str) {
    fn rmdirs(dir: &Path) {
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rmdirs(&e.path());
                }
            }
        }
        let _ = fs::remove_dir(dir);
    }
    for h in crate::env::cgroup_hierarchies() {
        rmdirs(&h.join(parent.trim_start_matches('/')));
        let _ = fs::remove_dir(h.join("berth-e2e"));
    }
}

/// Non-directory entries under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => out.extend(files_under(&p)),
                _ => out.push(p),
            }
        }
    }
    out
}

impl Drop for Berthd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut clean = false;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    clean = status.success();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if !clean {
                let _ = child.kill();
                let _ = child.wait();
            }
            self.last_exit_clean = clean;
        }
        let problems = self.leftovers();
        let log = self.log();
        // Whatever a failed test left running: shims (they kill their
        // containers), then mounts, deepest first.
        shutdown_shims(&self.state_dir.join("shims"));
        let mut mounts = mounts_under(&self.dir);
        mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        for m in mounts {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = fs::remove_dir_all(&self.dir);
        if let Some(parent) = &self.cgroup_parent {
            remove_cgroup_tree(parent);
        }
        if !problems.is_empty() && !std::thread::panicking() {
            panic!(
                "berthd left things behind:\n  {}\nlog:\n{log}",
                problems.join("\n  ")
            );
        }
    }
}

/// Asks every shim under `dir` to shut down (killing its containers) and
/// waits for its answer.
fn shutdown_shims(dir: &Path) {
    use std::io::Write;
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let sock = e.path().join("shim.sock");
        if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&sock) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
            let _ = s.write_all(b"{\"op\":\"shutdown\"}\n");
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
        }
    }
}
