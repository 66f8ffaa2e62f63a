//! host-local style IPAM.
//!
//! State of a network lives in `<dataDir>/<network>/`:
//!
//! - `lock`: every operation holds an exclusive `flock` on it, so concurrent
//!   plugin processes (many ADDs at once) serialize here;
//! - one file per reserved address, named by the address (`10.89.0.5`,
//!   `fd00:89::5`), holding `<container id>\n<ifname>\n`;
//! - `last_reserved_ip.v4` / `last_reserved_ip.v6`: the last address handed
//!   out, so allocation goes round-robin and a released address is not
//!   reused at once.
//!
//! Reservation files are written to a temporary name and renamed into place.
//! The network address, the gateway (first host address) and, for IPv4, the
//! broadcast address are never handed out (see [`Pool`]).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::config::{Pool, ip_to_u128, u128_to_ip};
use super::error::BridgeError;

/// Who holds a reservation: the CNI attachment (container ID + ifname).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    pub container_id: String,
    pub ifname: String,
}

impl Owner {
    pub fn new(container_id: &str, ifname: &str) -> Self {
        Self {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
        }
    }

    fn encode(&self) -> String {
        format!("{}\n{}\n", self.container_id, self.ifname)
    }

    fn decode(text: &str) -> Option<Self> {
        // host-local writes `id\r\nifname`; accept either line ending.
        let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
        let container_id = lines.next()?.trim();
        let ifname = lines.next().unwrap_or("").trim();
        (!container_id.is_empty()).then(|| Self::new(container_id, ifname))
    }
}

/// One allocated address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    pub ip: IpAddr,
    /// False when the owner already held it (an ADD retry).
    pub fresh: bool,
}

/// The locked IPAM state of one network. The lock is released on drop.
#[derive(Debug)]
pub struct IpamStore {
    dir: PathBuf,
    _lock: Flock<File>,
}

const LOCK_FILE: &str = "lock";
const POLL: Duration = Duration::from_millis(2);

impl IpamStore {
    /// Opens (creating) the network's directory and takes its lock, waiting
    /// at most `timeout`.
    pub fn lock(dir: &Path, timeout: Duration) -> Result<Self, BridgeError> {
        fs::create_dir_all(dir)
            .map_err(|e| BridgeError::io(format!("creating {}", dir.display()), e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| BridgeError::io(format!("opening {}", path.display()), e))?;
        let deadline = Instant::now() + timeout;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => {
                    return Ok(Self {
                        dir: dir.to_path_buf(),
                        _lock: lock,
                    });
                }
                Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) => {
                    if Instant::now() >= deadline {
                        return Err(BridgeError::LockTimeout { timeout, path });
                    }
                    file = f;
                    std::thread::sleep(POLL);
                }
                Err((_, errno)) => {
                    return Err(BridgeError::io(
                        format!("locking {}", path.display()),
                        io::Error::from(errno),
                    ));
                }
            }
        }
    }

    /// Every reservation of the network.
    pub fn reservations(&self) -> Result<HashMap<IpAddr, Owner>, BridgeError> {
        let mut out = HashMap::new();
        let entries = fs::read_dir(&self.dir)
            .map_err(|e| BridgeError::io(format!("listing {}", self.dir.display()), e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| BridgeError::io(format!("listing {}", self.dir.display()), e))?;
            let name = entry.file_name();
            let Some(ip) = name.to_str().and_then(|n| n.parse::<IpAddr>().ok()) else {
                continue;
            };
            let text = match fs::read_to_string(entry.path()) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(BridgeError::io(
                        format!("reading {}", entry.path().display()),
                        e,
                    ));
                }
            };
            // An unreadable owner still blocks the address: never hand it out.
            let owner = Owner::decode(&text).unwrap_or_else(|| Owner::new("", ""));
            out.insert(ip, owner);
        }
        Ok(out)
    }

    /// The addresses `owner` holds.
    pub fn lookup(&self, owner: &Owner) -> Result<Vec<IpAddr>, BridgeError> {
        let mut ips: Vec<IpAddr> = self
            .reservations()?
            .into_iter()
            .filter(|(_, o)| o == owner)
            .map(|(ip, _)| ip)
            .collect();
        ips.sort();
        Ok(ips)
    }

    /// One address from each pool for `owner`: the one it already holds in
    /// that pool (an ADD retry), else the next free one after the last handed
    /// out. Addresses the owner holds outside the pools (the config changed)
    /// are released. On error nothing new stays reserved.
    pub fn allocate(&self, pools: &[Pool], owner: &Owner) -> Result<Vec<Allocation>, BridgeError> {
        let mut reserved = self.reservations()?;
        for (ip, o) in &reserved {
            if o == owner && !pools.iter().any(|p| p.contains(*ip)) {
                self.remove(*ip)?;
            }
        }
        reserved.retain(|ip, o| o != owner || pools.iter().any(|p| p.contains(*ip)));

        let mut out: Vec<Allocation> = Vec::new();
        for pool in pools {
            let held = reserved
                .iter()
                .find(|(ip, o)| *o == owner && pool.contains(**ip))
                .map(|(ip, _)| *ip);
            if let Some(ip) = held {
                out.push(Allocation { ip, fresh: false });
                continue;
            }
            match self.next_free(pool, &reserved) {
                Some(ip) => {
                    if let Err(e) = self.reserve(ip, owner, pool) {
                        self.undo(&out);
                        return Err(e);
                    }
                    reserved.insert(ip, owner.clone());
                    out.push(Allocation { ip, fresh: true });
                }
                None => {
                    self.undo(&out);
                    return Err(BridgeError::PoolExhausted(pool.subnet.to_string()));
                }
            }
        }
        Ok(out)
    }

    fn undo(&self, allocations: &[Allocation]) {
        for a in allocations.iter().filter(|a| a.fresh) {
            let _ = self.remove(a.ip);
        }
    }

    fn next_free(&self, pool: &Pool, reserved: &HashMap<IpAddr, Owner>) -> Option<IpAddr> {
        let v6 = pool.is_v6();
        let start = self
            .last_reserved(v6)
            .filter(|ip| pool.contains(*ip))
            .map(ip_to_u128)
            .filter(|v| *v < pool.last)
            .map_or(pool.first, |v| v + 1);
        // At most one probe per reserved address of the pool plus one finds a
        // free address if there is one, whatever the pool's size.
        let in_pool = reserved.keys().filter(|ip| pool.contains(**ip)).count() as u128;
        let probes = in_pool.saturating_add(1).min(pool.capacity());
        let mut candidate = start;
        for _ in 0..probes {
            let ip = u128_to_ip(candidate, v6);
            if !reserved.contains_key(&ip) {
                return Some(ip);
            }
            candidate = if candidate >= pool.last {
                pool.first
            } else {
                candidate + 1
            };
        }
        None
    }

    fn last_reserved_path(&self, v6: bool) -> PathBuf {
        self.dir.join(if v6 {
            "last_reserved_ip.v6"
        } else {
            "last_reserved_ip.v4"
        })
    }

    fn last_reserved(&self, v6: bool) -> Option<IpAddr> {
        fs::read_to_string(self.last_reserved_path(v6))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    fn reserve(&self, ip: IpAddr, owner: &Owner, pool: &Pool) -> Result<(), BridgeError> {
        write_atomic(&self.dir.join(ip.to_string()), owner.encode().as_bytes())?;
        write_atomic(
            &self.last_reserved_path(pool.is_v6()),
            format!("{ip}\n").as_bytes(),
        )
    }

    fn remove(&self, ip: IpAddr) -> Result<(), BridgeError> {
        let path = self.dir.join(ip.to_string());
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BridgeError::io(format!("removing {}", path.display()), e)),
        }
    }

    /// Releases every address `owner` holds; returns them.
    pub fn release(&self, owner: &Owner) -> Result<Vec<IpAddr>, BridgeError> {
        let ips = self.lookup(owner)?;
        for ip in &ips {
            self.remove(*ip)?;
        }
        Ok(ips)
    }

    /// Releases the given addresses.
    pub fn release_ips(&self, ips: &[IpAddr]) -> Result<(), BridgeError> {
        ips.iter().try_for_each(|ip| self.remove(*ip))
    }

    /// Releases every reservation whose owner `keep` rejects; returns them.
    pub fn retain(&self, keep: impl Fn(&Owner) -> bool) -> Result<Vec<IpAddr>, BridgeError> {
        let mut released = Vec::new();
        for (ip, owner) in self.reservations()? {
            if !owner.container_id.is_empty() && !keep(&owner) {
                self.remove(ip)?;
                released.push(ip);
            }
        }
        released.sort();
        Ok(released)
    }
}

/// berth_util's atomic write, its error the plugin's.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BridgeError> {
    berth_util::fs::write_atomic(path, bytes, 0o644)
        .map_err(|e| BridgeError::io(format!("writing {}", path.display()), e))
}

/// Whether the data directory can take reservations (STATUS).
pub fn probe_writable(dir: &Path) -> Result<(), BridgeError> {
    fs::create_dir_all(dir)
        .map_err(|e| BridgeError::io(format!("creating {}", dir.display()), e))?;
    let probe = dir.join(".status-probe");
    write_atomic(&probe, b"ok\n")?;
    fs::remove_file(&probe).map_err(|e| BridgeError::io(format!("removing {}", probe.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(s: &str) -> Pool {
        Pool::new(s.parse().expect("net")).expect("pool")
    }

    fn store(dir: &Path) -> IpamStore {
        IpamStore::lock(dir, Duration::from_secs(1)).expect("lock")
    }

    #[test]
    fn allocates_round_robin_and_reuses_for_same_owner() {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = store(tmp.path());
        let pools = [pool("10.9.0.0/29"), pool("fd00:9::/64")];
        let a = s.allocate(&pools, &Owner::new("a", "eth0")).expect("a");
        assert_eq!(a[0].ip.to_string(), "10.9.0.2");
        assert_eq!(a[1].ip.to_string(), "fd00:9::2");
        assert!(a.iter().all(|x| x.fresh));
        // Retry: the same addresses, not fresh.
        let again = s.allocate(&pools, &Owner::new("a", "eth0")).expect("a2");
        assert_eq!(
            again.iter().map(|x| x.ip).collect::<Vec<_>>(),
            vec![a[0].ip, a[1].ip]
        );
        assert!(again.iter().all(|x| !x.fresh));
        // A second interface of the same container is another owner.
        let b = s.allocate(&pools, &Owner::new("a", "eth1")).expect("b");
        assert_eq!(b[0].ip.to_string(), "10.9.0.3");
        // Round robin: a released address is not handed out next.
        s.release(&Owner::new("a", "eth0")).expect("release");
        let c = s.allocate(&pools, &Owner::new("c", "eth0")).expect("c");
        assert_eq!(c[0].ip.to_string(), "10.9.0.4");
        assert_eq!(s.lookup(&Owner::new("c", "eth0")).expect("lookup").len(), 2);
    }

    #[test]
    fn never_hands_out_network_gateway_or_broadcast_and_reports_exhaustion() {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = store(tmp.path());
        let pools = [pool("10.9.0.0/29")];
        let mut got = Vec::new();
        for i in 0..5 {
            let a = s
                .allocate(&pools, &Owner::new(&format!("c{i}"), "eth0"))
                .expect("alloc");
            got.push(a[0].ip.to_string());
        }
        assert_eq!(
            got,
            ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"]
        );
        let err = s
            .allocate(&pools, &Owner::new("c9", "eth0"))
            .expect_err("full");
        assert!(matches!(err, BridgeError::PoolExhausted(_)));
        // Released addresses are handed out again (wrapping around).
        s.release(&Owner::new("c1", "eth0")).expect("release");
        let a = s
            .allocate(&pools, &Owner::new("c9", "eth0"))
            .expect("alloc");
        assert_eq!(a[0].ip.to_string(), "10.9.0.3");
    }

    #[test]
    fn exhausting_one_family_reserves_nothing() {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = store(tmp.path());
        let pools = [pool("fd00:9::/64"), pool("10.9.0.0/30")];
        s.allocate(&pools, &Owner::new("a", "eth0")).expect("a");
        let err = s
            .allocate(&pools, &Owner::new("b", "eth0"))
            .expect_err("full");
        assert!(matches!(err, BridgeError::PoolExhausted(_)));
        assert!(
            s.lookup(&Owner::new("b", "eth0"))
                .expect("lookup")
                .is_empty()
        );
    }

    #[test]
    fn changed_subnet_releases_the_old_address() {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = store(tmp.path());
        let owner = Owner::new("a", "eth0");
        s.allocate(&[pool("10.9.0.0/24")], &owner).expect("old");
        let a = s.allocate(&[pool("10.10.0.0/24")], &owner).expect("new");
        assert_eq!(s.lookup(&owner).expect("lookup"), vec![a[0].ip]);
    }

    #[test]
    fn retain_releases_the_rest_and_reads_host_local_files() {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = store(tmp.path());
        let pools = [pool("10.9.0.0/24")];
        s.allocate(&pools, &Owner::new("a", "eth0")).expect("a");
        s.allocate(&pools, &Owner::new("b", "eth0")).expect("b");
        fs::write(tmp.path().join("10.9.0.50"), "c\r\neth0").expect("write");
        let released = s.retain(|o| o.container_id == "b").expect("gc");
        assert_eq!(
            released.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["10.9.0.2", "10.9.0.50"]
        );
        assert_eq!(s.reservations().expect("list").len(), 1);
    }

    #[test]
    fn lock_times_out_while_held() {
        let tmp = tempfile::tempdir().expect("tmp");
        let _held = store(tmp.path());
        let err = IpamStore::lock(tmp.path(), Duration::from_millis(30)).expect_err("held");
        assert!(matches!(err, BridgeError::LockTimeout { .. }));
        assert_eq!(err.code(), 11);
    }

    #[test]
    fn big_v6_pool_finds_free_addresses_quickly() {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = store(tmp.path());
        let pools = [pool("fd00::/64")];
        for i in 0..50 {
            s.allocate(&pools, &Owner::new(&format!("c{i}"), "eth0"))
                .expect("alloc");
        }
        assert_eq!(s.reservations().expect("list").len(), 50);
        probe_writable(tmp.path()).expect("writable");
    }
}
