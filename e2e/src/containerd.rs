//! A private containerd 1.6 (Debian's containerd + runc) for side-by-side
//! benchmarks: its own root, state, sockets, CNI config and runc root under
//! one scratch dir, torn down completely on drop. The recipe, and why each
//! setting is there, is in docs/containerd-baseline.md.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};

use crate::env::{mounts_under, scratch_dir};
use crate::memory::{self, Mem};

const CONFIG_TEMPLATE: &str = include_str!("../assets/containerd.toml.tmpl");
const CONFLIST_TEMPLATE: &str = include_str!("../assets/bridge.conflist.tmpl");
const SHIM: &str = "containerd-shim-runc-v2";
/// Where the benchmark puts containerd's pods (its own, to clean up).
pub const CGROUP_PARENT: &str = "/berth-bench-containerd";

/// A running private containerd.
#[derive(Debug)]
pub struct Containerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub bridge: String,
    pub subnet: String,
    child: Option<Child>,
    ip_forward_before: Option<String>,
}

/// A /24 in 10.88.0.0/16 that no address or route on this host uses yet.
pub fn free_subnet(seed: u32) -> String {
    let used = ["addr", "route"]
        .iter()
        .filter_map(|what| Command::new("ip").args(["-4", "-o", what]).output().ok())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .collect::<String>();
    (0..150u32)
        .map(|i| 100 + (seed + i) % 150)
        .map(|n| format!("10.88.{n}.0/24"))
        .find(|s| !used.contains(&s.replace(".0/24", ".")))
        .expect("no free 10.88.x.0/24 subnet")
}

/// The bridge + host-local + portmap conflist both runtimes get.
pub fn bridge_conflist(dir: &str, bridge: &str, subnet: &str, name: &str) -> String {
    CONFLIST_TEMPLATE
        .replace("@DIR@", dir)
        .replace("@BRIDGE@", bridge)
        .replace("@SUBNET@", subnet)
        .replace("@NETNAME@", name)
}

impl Containerd {
    /// Starts containerd and waits until its CRI answers.
    pub async fn start() -> Containerd {
        let dir = scratch_dir("ctrd");
        let tag = dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace("ctrd-", "");
        let short: String = tag.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        let bridge = format!("cb{}", &short[short.len().saturating_sub(12)..]);
        let subnet = free_subnet(std::process::id());
        let d = dir.to_str().unwrap();
        for sub in [
            "root",
            "state",
            "tmp",
            "opt",
            "cni/net.d",
            "cni/ipam",
            "certs.d",
        ] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        fs::write(
            dir.join("containerd.toml"),
            CONFIG_TEMPLATE.replace("@DIR@", d),
        )
        .unwrap();
        fs::write(
            dir.join("cni/net.d/10-bridge.conflist"),
            bridge_conflist(d, &bridge, &subnet, &format!("ctrd-{short}")),
        )
        .unwrap();
        let log = fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("containerd.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting containerd (apt-get install containerd runc)");
        let mut c = Containerd {
            socket: dir.join("containerd.sock"),
            dir,
            bridge,
            subnet,
            child: Some(child),
            ip_forward_before: fs::read_to_string("/proc/sys/net/ipv4/ip_forward").ok(),
        };
        c.wait_ready().await;
        c.import_pause();
        c
    }

    /// containerd 1.6 runs every pod from `sandbox_image`, which cannot be
    /// pulled offline: import berth's busybox-based pause image under that
    /// name.
    fn import_pause(&self) {
        let archive = self.dir.join("tmp/pause.tar");
        crate::fixture::write_oci_archive(
            &crate::fixture::pause(),
            crate::fixture::PAUSE_NAME,
            &archive,
        );
        let out = Command::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .args(["-n", "k8s.io", "images", "import"])
            .arg(&archive)
            .output()
            .expect("running ctr (package containerd)");
        assert!(
            out.status.success(),
            "ctr images import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.socket.exists()
                && let Ok(mut client) =
                    berth_cli::client::connect(&self.socket, Duration::from_secs(1)).await
                && client
                    .runtime
                    .version(k8s_cri::v1::VersionRequest::default())
                    .await
                    .is_ok()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("containerd exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "containerd CRI not answering after 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("containerd running").id()
    }

    /// The pod shims of this instance (selected by its socket address).
    pub fn shim_pids(&self) -> Vec<u32> {
        memory::pids_of(SHIM, Some(self.socket.to_str().unwrap()))
    }

    /// containerd's memory, and the sum over its shims with their count.
    pub fn memory(&self) -> (Mem, Mem, usize) {
        let daemon = memory::of_pid(self.pid()).unwrap_or_default();
        let shims = self.shim_pids();
        let total = shims
            .iter()
            .filter_map(|p| memory::of_pid(*p))
            .fold(Mem::default(), |a, b| a + b);
        (daemon, total, shims.len())
    }

    fn teardown(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // containerd leaves shims and containers running when it exits.
        let runc_root = self.dir.join("state/runc/k8s.io");
        if runc_root.is_dir() {
            let out = Command::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .args(["list", "-q"])
                .output();
            for id in out
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
                .lines()
            {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&runc_root)
                    .args(["delete", "--force", id])
                    .status();
            }
        }
        for pid in self.shim_pids() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        // Shim sockets live at /run/containerd/s/sha256(<address>/<ns>/<id>).
        let tasks = self.dir.join("state/io.containerd.runtime.v2.task/k8s.io");
        if let Ok(entries) = fs::read_dir(&tasks) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let key = format!("{}/k8s.io/{id}", self.socket.display());
                let hash = format!("{:x}", Sha256::digest(key.as_bytes()));
                let _ = fs::remove_file(Path::new("/run/containerd/s").join(hash));
            }
        }
        let _ = fs::remove_dir(Path::new("/run/containerd/s"));
        let _ = fs::remove_dir(Path::new("/run/containerd"));
        for _ in 0..3 {
            for m in mounts_under(&self.dir) {
                let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        if let Some(before) = &self.ip_forward_before {
            let _ = fs::write("/proc/sys/net/ipv4/ip_forward", before);
        }
        // Pods without a cgroup parent live under /k8s.io; runc removes
        // their leaves, the parent stays (empty): remove it if empty.
        for h in crate::env::cgroup_hierarchies() {
            let _ = fs::remove_dir(h.join(CGROUP_PARENT.trim_start_matches('/')));
        }
        if mounts_under(&self.dir).is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.teardown();
    }
}
