//! Running test code inside a pod's network namespace (on a dedicated
//! thread: namespaces are per thread), and small probes of host state.

use std::path::Path;
use std::process::Command;

use nix::sched::{CloneFlags, setns};

/// Runs `f` on a new thread that has joined the namespace pinned at `path`
/// (`CLONE_NEWNET`, `CLONE_NEWUTS`, ...).
pub fn in_ns<T: Send + 'static>(
    path: &Path,
    kind: CloneFlags,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let path = path.to_owned();
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        setns(&fd, kind).unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
        f()
    })
    .join()
    .expect("namespace thread panicked")
}

/// Runs `f` inside the network namespace at `path`.
pub fn in_netns<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    in_ns(path, CloneFlags::CLONE_NEWNET, f)
}

/// Names of the host's network interfaces.
pub fn host_links() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_owned())
        .collect()
}

/// The interfaces attached to `bridge` (the pods' host-side veths).
pub fn bridge_ports(bridge: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_owned())
        .collect()
}

/// Deletes a host link if it exists (test cleanup).
pub fn delete_link(name: &str) {
    let _ = Command::new("ip")
        .args(["link", "del", name])
        .stderr(std::process::Stdio::null())
        .status();
}

/// A private /24 (10.88.N.0/24) and bridge name held for one test: an
/// exclusive lock file per N keeps parallel test processes apart, and N is
/// skipped if the host already uses it. Released on drop.
#[derive(Debug)]
pub struct NetLease {
    pub subnet: String,
    /// `10.88.N.1`-style gateway prefix, e.g. `10.88.N.`.
    pub prefix: String,
    pub bridge: String,
    /// Also the name of the nftables table berth-bridge uses in tests.
    pub nft_table: String,
    _lock: nix::fcntl::Flock<std::fs::File>,
    _forwarding: ForwardingGuard,
}

impl Drop for NetLease {
    fn drop(&mut self) {
        delete_link(&self.bridge);
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.nft_table])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Gateway-mode bridges turn on `net.ipv4.ip_forward`. Test processes
/// count themselves in a shared file under a lock; the last one out puts
/// back the value the first one found.
#[derive(Debug)]
pub struct ForwardingGuard;

const FWD: &str = "/proc/sys/net/ipv4/ip_forward";

fn with_forwarding_state(f: impl FnOnce(&mut (u32, String))) {
    let dir = Path::new("/tmp/berth-e2e");
    std::fs::create_dir_all(dir).unwrap();
    let lock = std::fs::File::create(dir.join("ipfwd.lock")).unwrap();
    let _l = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let state_path = dir.join("ipfwd.state");
    let mut state = std::fs::read_to_string(&state_path)
        .ok()
        .and_then(|s| {
            let (n, v) = s.split_once(' ')?;
            Some((n.parse().ok()?, v.to_owned()))
        })
        .unwrap_or((0, String::new()));
    f(&mut state);
    if state.0 == 0 {
        let _ = std::fs::remove_file(&state_path);
    } else {
        std::fs::write(&state_path, format!("{} {}", state.0, state.1)).unwrap();
    }
}

impl ForwardingGuard {
    pub fn take() -> ForwardingGuard {
        with_forwarding_state(|(n, orig)| {
            if *n == 0 {
                *orig = std::fs::read_to_string(FWD)
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
            }
            *n += 1;
        });
        ForwardingGuard
    }
}

impl Drop for ForwardingGuard {
    fn drop(&mut self) {
        with_forwarding_state(|(n, orig)| {
            *n = n.saturating_sub(1);
            if *n == 0 && !orig.is_empty() {
                let _ = std::fs::write(FWD, orig.as_str());
            }
        });
    }
}

impl NetLease {
    pub fn take() -> NetLease {
        let dir = Path::new("/tmp/berth-e2e/nets");
        std::fs::create_dir_all(dir).unwrap();
        let used = ["addr", "route"]
            .iter()
            .filter_map(|w| Command::new("ip").args(["-4", "-o", w]).output().ok())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .collect::<String>();
        let start = std::process::id() % 150;
        for i in 0..150 {
            let n = 100 + (start + i) % 150;
            let prefix = format!("10.88.{n}.");
            if used.contains(&prefix) {
                continue;
            }
            let f = std::fs::File::create(dir.join(format!("{n}.lock"))).unwrap();
            if let Ok(lock) =
                nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
            {
                return NetLease {
                    subnet: format!("{prefix}0/24"),
                    bridge: format!("btest{n}"),
                    nft_table: format!("berth-test-{n}"),
                    prefix,
                    _lock: lock,
                    _forwarding: ForwardingGuard::take(),
                };
            }
        }
        panic!("no free test subnet in 10.88.100-249.0/24");
    }
}
