//! What a scenario runs against: a private berthd, a private containerd, or
//! an endpoint someone else started.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::memory::{self, Mem};
use crate::containerd::Containerd;
use crate::daemon::Berthd;

/// A private berthd with its bench network (its bridge removed on drop).
#[derive(Debug)]
pub struct BerthTarget {
    pub daemon: Berthd,
    pub bridge: String,
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
                let shim_pids = memory::pids_of("berth-shim", Some(d.state_dir.to_str()?));
                let shims = shim_pids
                    .iter()
                    .filter_map(|p| memory::of_pid(*p))
                    .fold(Mem::default(), |a, b| a + b);
                Some(RuntimeMem {
                    daemon,
                    shims,
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
}
