//! Harness for the shim's integration tests: a real `berth-shim` in a
//! temp dir, Debian's runc (`/usr/sbin/runc`) with a private `--root`,
//! bundles whose rootfs is Debian's static busybox. Everything a test
//! made is removed by `Env`'s Drop, also when the test fails.

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_shim::proto::{Create, Request, Response, Runtime};
use serde_json::{Value, json};

pub const RUNC: &str = "/usr/sbin/runc";
pub const BUSYBOX: &str = berth_testkit::BUSYBOX;
pub const SHIM: &str = env!("CARGO_BIN_EXE_berth-shim");

/// Whether the test can run: root, runc and busybox present. Without
/// them: fails under CI=true, else prints a skip line.
pub fn can_run(test: &str) -> bool {
    berth_testkit::root_or_skip(test)
        && berth_testkit::require(
            test,
            Path::new(RUNC).exists() && Path::new(BUSYBOX).exists(),
            "needs /usr/sbin/runc and /bin/busybox (busybox-static)",
        )
}

/// A test's world: temp dir, shim dir, runc root, containers, cgroups.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub runc_root: PathBuf,
    pub shim_pid: Option<u32>,
    ids: Vec<String>,
    cgroups: Vec<String>,
    n: usize,
}

pub struct Bundle {
    pub id: String,
    pub path: PathBuf,
    pub rootfs: PathBuf,
    pub cgroup: String,
}

impl Bundle {
    /// The container's memory cgroup directory (v1 memory controller, or
    /// the unified hierarchy).
    pub fn memory_cgroup(&self) -> PathBuf {
        let v1 = Path::new("/sys/fs/cgroup/memory");
        if v1.is_dir() {
            v1.join(self.cgroup.trim_start_matches('/'))
        } else {
            Path::new("/sys/fs/cgroup").join(self.cgroup.trim_start_matches('/'))
        }
    }
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("berth-shim-test-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().join("shim");
        let runc_root = tmp.path().join("runc");
        Env {
            tmp,
            dir,
            runc_root,
            shim_pid: None,
            ids: Vec::new(),
            cgroups: Vec::new(),
            n: 0,
        }
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.join("shim.sock")
    }

    /// Starts the shim as berthd does; returns its pid.
    pub fn start_shim(&mut self) -> u32 {
        let out = Command::new(SHIM)
            .args(["--pod-id", "pod-1", "--dir"])
            .arg(&self.dir)
            .args(["--log-level", "debug"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "shim failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        self.shim_pid = Some(pid);
        pid
    }

    pub fn call(&self, req: &Request) -> Response {
        call(&self.sock(), req, Duration::from_secs(90)).unwrap()
    }

    pub fn runtime(&self) -> Runtime {
        Runtime {
            path: RUNC.into(),
            root: Some(self.runc_root.clone()),
            systemd_cgroup: false,
            options: vec![],
        }
    }

    /// A bundle running `sh -c script` (busybox), with `edit` applied to
    /// its config.json.
    pub fn bundle(&mut self, script: &str, edit: impl FnOnce(&mut Value)) -> Bundle {
        self.n += 1;
        let me = std::process::id();
        let id = format!("bst-{me}-{}", self.n);
        let cgroup = format!("/berth-shim-test-{me}-{}", self.n);
        let path = self.tmp.path().join(&id);
        let rootfs = path.join("rootfs");
        berth_testkit::busybox_rootfs(&rootfs, &[]);
        let mut config = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": ["/bin/busybox", "sh", "-c", script],
                "env": ["PATH=/bin"],
                "cwd": "/"
            },
            "root": {"path": rootfs},
            "hostname": "berth-shim-test",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]}
            ],
            "linux": {
                "namespaces": [
                    {"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
                    {"type": "uts"}, {"type": "network"}
                ],
                "cgroupsPath": cgroup,
            }
        });
        edit(&mut config);
        fs::write(path.join("config.json"), config.to_string()).unwrap();
        self.ids.push(id.clone());
        self.cgroups.push(cgroup.clone());
        Bundle {
            id,
            path,
            rootfs,
            cgroup,
        }
    }

    pub fn create_request(&self, b: &Bundle, log: Option<&Path>) -> Create {
        Create {
            id: b.id.clone(),
            bundle: b.path.clone(),
            runtime: self.runtime(),
            log_path: log.map(Path::to_path_buf),
            stdin: false,
            stdin_once: false,
            tty: false,
            memory_cgroup: Some(b.memory_cgroup()),
        }
    }

    /// Create + Start; returns the init pid.
    pub fn run(&mut self, b: &Bundle, log: Option<&Path>) -> u32 {
        let pid = match self.call(&Request::Create(self.create_request(b, log))) {
            Response::Created { pid } => pid,
            r => panic!("create: {r:?}"),
        };
        assert_eq!(
            self.call(&Request::Start { id: b.id.clone() }),
            Response::Ok
        );
        pid
    }

    /// Writes an OCI process JSON for ExecSync.
    pub fn process_file(&self, name: &str, script: &str) -> PathBuf {
        let p = self.tmp.path().join(format!("{name}.json"));
        let v = json!({
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/busybox", "sh", "-c", script],
            "env": ["PATH=/bin"],
            "cwd": "/"
        });
        fs::write(&p, v.to_string()).unwrap();
        p
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(pid) = self.shim_pid
            && alive(pid)
        {
            let _ = call(&self.sock(), &Request::Shutdown, Duration::from_secs(20));
            if !wait_dead(pid, Duration::from_secs(5)) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for id in &self.ids {
            let _ = Command::new(RUNC)
                .arg("--root")
                .arg(&self.runc_root)
                .args(["delete", "--force", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        for cg in &self.cgroups {
            remove_cgroup(cg);
        }
    }
}

/// Kills what is left in a cgroup path in every hierarchy and removes it.
fn remove_cgroup(path: &str) {
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut dirs: Vec<PathBuf> = hierarchies
        .filter_map(|h| Some(h.ok()?.path().join(path.trim_start_matches('/'))))
        .collect();
    dirs.push(Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')));
    for d in dirs.iter().filter(|d| d.is_dir()) {
        if let Ok(procs) = fs::read_to_string(d.join("cgroup.procs")) {
            for p in procs.lines().filter_map(|l| l.parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for _ in 0..50 {
            if fs::remove_dir(d).is_ok() || !d.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One request on a fresh connection.
pub fn call(sock: &Path, req: &Request, timeout: Duration) -> std::io::Result<Response> {
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(req).unwrap();
    line.push(b'\n');
    s.write_all(&line)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    assert_eq!(buf.last(), Some(&b'\n'), "answer is one line: {buf:?}");
    assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 1);
    serde_json::from_slice(&buf).map_err(std::io::Error::other)
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next());
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}

pub fn wait_dead(pid: u32, timeout: Duration) -> bool {
    wait_until(timeout, || !alive(pid))
}

/// Polls `f` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many descriptors a process has open.
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// The parent pid of a process.
pub fn ppid(pid: u32) -> u32 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = s.rsplit_once(')').unwrap().1;
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A `/proc/<pid>/status` (or smaps_rollup) field in KiB.
pub fn kib(file: &str, field: &str) -> u64 {
    fs::read_to_string(file)
        .unwrap()
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("{field} in {file}"))
}

/// One parsed CRI log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: String,
    pub tag: String,
    pub content: Vec<u8>,
}

/// Parses a CRI log file strictly: every line `<ts> <stream> <P|F> <content>`
/// with a 30-byte RFC3339Nano UTC timestamp.
pub fn parse_log(data: &[u8]) -> Vec<LogLine> {
    assert!(
        data.is_empty() || data.ends_with(b"\n"),
        "log ends with a newline"
    );
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let ts = &l[..30];
            assert!(
                is_timestamp(ts),
                "timestamp {:?}",
                String::from_utf8_lossy(ts)
            );
            assert_eq!(l[30], b' ');
            let rest = &l[31..];
            let sp = rest.iter().position(|&b| b == b' ').unwrap();
            let stream = String::from_utf8(rest[..sp].to_vec()).unwrap();
            assert!(stream == "stdout" || stream == "stderr", "stream {stream}");
            let rest = &rest[sp + 1..];
            let tag = String::from_utf8(rest[..1].to_vec()).unwrap();
            assert!(tag == "P" || tag == "F", "tag {tag}");
            assert_eq!(rest[1], b' ');
            LogLine {
                stream,
                tag,
                content: rest[2..].to_vec(),
            }
        })
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub fn is_timestamp(ts: &[u8]) -> bool {
    ts.len() == 30
        && ts.iter().enumerate().all(|(i, &b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'.',
            29 => b == b'Z',
            _ => b.is_ascii_digit(),
        })
}
