//! What a scenario runs against: a private berthd, a private containerd, or
//! an endpoint someone else started.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::containerd::Containerd;
use crate::daemon::Berthd;
use crate::memory::{self, Mem};

/// A private berthd with its bench network (its bridge removed on drop).
#[derive(Debug)]
pub struct BerthTarget {
    pub daemon: Berthd,
    pub bridge: String,
    /// The RuntimeClass handler of the bench's pods: "" is berthd's
    /// default (`berth`, berth-runtime), or `runc`.
    pub handler: String,
}

impl Drop for BerthTarget {
    fn drop(&mut self) {
        crate::netns::delete_link(&self.bridge);
    }
}

#[derive(Debug)]
pub enum Target {
    Berth(BerthTarget),
    Containerd(Containerd),
    /// An endpoint started elsewhere; memory is not measured.
    Endpoint(PathBuf),
}

/// The runtime's own memory: daemon and per-pod shims.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RuntimeMem {
    pub daemon: Mem,
    pub shims: Mem,
    pub shim_count: usize,
}

impl Target {
    pub fn name(&self) -> &'static str {
        match self {
            Target::Berth(_) => "berth",
            Target::Containerd(_) => "containerd",
            Target::Endpoint(_) => "endpoint",
        }
    }

    pub fn socket(&self) -> &Path {
        match self {
            Target::Berth(b) => &b.daemon.socket,
            Target::Containerd(c) => &c.socket,
            Target::Endpoint(p) => p,
        }
    }

    pub fn memory(&self) -> Option<RuntimeMem> {
        match self {
            Target::Berth(b) => {
                let d = &b.daemon;
                let daemon = memory::of_pid(d.pid().as_raw() as u32)?;
                // berthd starts each pod's shim with `--dir <state>/shims/<pod>`.
                let state = d.state_dir.clone();
                let shim_pids = memory::pids_with_flag("berth-shim", "--dir", |v| {
                    Path::new(v).starts_with(&state)
                });
                Some(RuntimeMem {
                    daemon,
                    shims: memory::sum(&shim_pids),
                    shim_count: shim_pids.len(),
                })
            }
            Target::Containerd(c) => {
                let (daemon, shims, shim_count) = c.memory();
                Some(RuntimeMem {
                    daemon,
                    shims,
                    shim_count,
                })
            }
            Target::Endpoint(_) => None,
        }
    }

    /// The daemon's pid, for runtimes the harness started.
    pub fn daemon_pid(&self) -> Option<u32> {
        match self {
            Target::Berth(b) => Some(b.daemon.pid().as_raw() as u32),
            Target::Containerd(c) => Some(c.pid()),
            Target::Endpoint(_) => None,
        }
    }

    /// berthd's metrics endpoint (other runtimes' are not compared).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Target::Berth(b) => Some(b.daemon.metrics_addr()),
            _ => None,
        }
    }

    /// The `runtime_handler` of the pods the scenarios run.
    pub fn runtime_handler(&self) -> &str {
        match self {
            Target::Berth(b) => &b.handler,
            _ => "",
        }
    }

    /// The cgroup parent of the bench's pods ("" = the runtime's default).
    pub fn cgroup_parent(&self) -> &str {
        match self {
            Target::Containerd(_) => crate::containerd::CGROUP_PARENT,
            _ => "",
        }
    }

    /// Where the pods' log directories go: inside the runtime's scratch
    /// dir, so a failed run leaves none behind.
    pub fn log_root(&self) -> PathBuf {
        match self {
            Target::Berth(b) => b.daemon.dir.join("podlogs"),
            Target::Containerd(c) => c.dir.join("podlogs"),
            Target::Endpoint(_) => {
                std::env::temp_dir().join(format!("berth-bench-logs-{}", std::process::id()))
            }
        }
    }
}
