//! berth-runtime's test harness: one container's world per test (bundle
//! with a busybox rootfs, state root, log, cgroup), removed on drop also
//! when the test fails; the test process is a child subreaper that reaps
//! the inits and exec'd processes reparented to it.

#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_berth-runtime");
pub static SEQ: AtomicU32 = AtomicU32::new(0);

/// True when the test may run; prints a skip line (or fails under CI).
pub fn have_root() -> bool {
    if !berth_testkit::root_or_skip("berth-runtime's tests") {
        return false;
    }
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    true
}

pub fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Every directory of the cgroup `path` (all v1 hierarchies, or the v2 one).
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    if cgroup_v2() {
        return vec![Path::new("/sys/fs/cgroup").join(rel)];
    }
    let mut dirs = Vec::new();
    for e in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p = e.path();
        // Skip the comma-joined controller symlinks (cpu -> cpu,cpuacct).
        if fs::symlink_metadata(&p)
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            dirs.push(p.join(rel));
        }
    }
    dirs
}

pub fn memory_limit_file(path: &str) -> PathBuf {
    let rel = path.trim_start_matches('/');
    if cgroup_v2() {
        Path::new("/sys/fs/cgroup").join(rel).join("memory.max")
    } else {
        Path::new("/sys/fs/cgroup/memory")
            .join(rel)
            .join("memory.limit_in_bytes")
    }
}

/// One container's world: bundle, state root, log file, cgroup. Drop
/// removes everything, also when the test failed half way.
///
/// A reaper thread waits for the processes this test adopted (inits and
/// detached exec'd processes, reparented here), as berth's shim does: a
/// dying init waits until every process of its pid namespace is reaped.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub id: String,
    pub cgroup: String,
    pub pids: Arc<Mutex<Vec<i32>>>,
    pub stop: Arc<AtomicBool>,
    pub reaper: Option<JoinHandle<()>>,
}

pub fn reap_loop(pids: Arc<Mutex<Vec<i32>>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        let list = pids.lock().unwrap().clone();
        for pid in list {
            match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                _ => pids.lock().unwrap().retain(|&p| p != pid),
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Env {
    pub fn new(tag: &str) -> Env {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let dir = tempfile::Builder::new()
            .prefix("berth-runtime-test-")
            .tempdir()
            .unwrap();
        berth_testkit::busybox_rootfs(
            &dir.path().join("bundle/rootfs"),
            &["sh", "sleep", "cat", "echo", "mkdir", "id", "true"],
        );
        let pids = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reaper = {
            let (pids, stop) = (pids.clone(), stop.clone());
            std::thread::spawn(move || reap_loop(pids, stop))
        };
        Env {
            dir,
            id: format!("berth-runtime-test-{tag}-{pid}-{n}"),
            cgroup: format!("/berth-runtime-test-{pid}-{n}"),
            pids,
            stop,
            reaper: Some(reaper),
        }
    }

    pub fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("runtime.log")
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// config.json running `args`, with new pid/mount/ipc/uts/net namespaces,
    /// the default mounts and this test's cgroup.
    pub fn write_config(&self, args: &[&str], seccomp: Option<Value>) {
        let mut linux = json!({
            "cgroupsPath": self.cgroup,
            "namespaces": [
                {"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "network"}
            ],
            "maskedPaths": ["/proc/kcore", "/proc/keys"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
        });
        if let Some(s) = seccomp {
            linux["seccomp"] = s;
        }
        let caps = json!([
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FOWNER",
            "CAP_KILL",
            "CAP_SETUID",
            "CAP_SETGID"
        ]);
        let config = json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "hostname": "berth-test",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/bin", "TERM=xterm"],
                "cwd": "/",
                // Lower than the test's own: the VM lacks CAP_SYS_RESOURCE,
                // the runtime must clamp it rather than fail.
                "oomScoreAdj": -999,
                "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
                "noNewPrivileges": false
            },
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]}
            ],
            "linux": linux
        });
        fs::write(
            self.bundle().join("config.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root")
            .arg(self.root())
            .arg("--log")
            .arg(self.log())
            .arg("--log-format")
            .arg("json")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs a runtime command to completion: (status, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (ExitStatus, String, String) {
        let out = self.cmd(args).output().unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (st, out, err) = self.run(args);
        assert!(
            st.success(),
            "berth-runtime {args:?}: {st}\nstderr: {err}\nlog: {}",
            self.log_text()
        );
        out
    }

    /// Runs a runtime command that leaves a process behind holding its stdio
    /// pipes (exec --detach): waits for the runtime only.
    pub fn run_detached(&self, args: &[&str]) {
        let st = self.cmd(args).spawn().unwrap().wait().unwrap();
        assert!(
            st.success(),
            "berth-runtime {args:?}: {st}\nlog: {}",
            self.log_text()
        );
    }

    pub fn adopt(&self, pid: i32) {
        self.pids.lock().unwrap().push(pid);
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// `create` with stdio pipes; returns the read ends of the runtime's
    /// stdout/stderr pipes are now the container's.
    pub fn create(&mut self) -> Pipes {
        self.create_with(&[])
    }

    /// `create` with extra environment variables for the runtime.
    pub fn create_with(&mut self, vars: &[(&str, &str)]) -> Pipes {
        let bundle = self.bundle();
        let pid_file = self.path("init.pid");
        let mut cmd = self.cmd(&[
            "create",
            "--bundle",
            bundle.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            &self.id,
        ]);
        cmd.envs(vars.iter().copied());
        let mut child = cmd.spawn().unwrap();
        let st = child.wait().unwrap();
        assert!(st.success(), "create: {st}\nlog: {}", self.log_text());
        let pid: i32 = fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        self.adopt(pid);
        Pipes {
            stdout: child.stdout.take().unwrap(),
            stderr: child.stderr.take().unwrap(),
        }
    }

    pub fn state(&self) -> Value {
        serde_json::from_str(&self.ok(&["state", &self.id])).unwrap()
    }

    pub fn wait_status(&self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let st = self.state();
            if st["status"] == want {
                return;
            }
            assert!(Instant::now() < deadline, "state never {want}: {st}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the reaper has collected every adopted process.
    pub fn reap(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pids.lock().unwrap().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.run(&["delete", "--force", &self.id.clone()]);
        for dir in cgroup_dirs(&self.cgroup) {
            if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
                for p in procs.lines().filter_map(|l| l.parse().ok()) {
                    let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                }
            }
            for _ in 0..100 {
                if !dir.exists() || fs::remove_dir(&dir).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let pids = self.pids.lock().unwrap().clone();
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        self.reap();
        self.stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.reaper.take() {
            let _ = r.join();
        }
    }
}

/// The container's stdout and stderr (given to `create` as pipes).
pub struct Pipes {
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
}

/// Reads from a pipe until `needle` shows up (or panics after 10 s).
pub fn read_until(pipe: &mut ChildStdout, needle: &str) -> String {
    let flags = OFlag::from_bits_truncate(fcntl(pipe.as_fd(), FcntlArg::F_GETFL).unwrap());
    fcntl(pipe.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("read pipe: {e}"),
        }
        if String::from_utf8_lossy(&got).contains(needle) || Instant::now() > deadline {
            break;
        }
    }
    let s = String::from_utf8_lossy(&got).into_owned();
    assert!(s.contains(needle), "{needle:?} not seen; got {s:?}");
    s
}

pub fn assert_gone(env: &Env) {
    assert!(!env.root().join(&env.id).exists(), "state dir left behind");
    assert!(
        !env.root().join(".berth").join(&env.id).exists(),
        "sidecar left behind"
    );
    for dir in cgroup_dirs(&env.cgroup) {
        assert!(!dir.exists(), "cgroup {} left behind", dir.display());
    }
}

pub fn last_log_error(env: &Env) -> String {
    env.log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .rfind(|v| v["level"] == "error")
        .map(|v| v["msg"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}
