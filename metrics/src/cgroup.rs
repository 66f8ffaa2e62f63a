//! What a cgroup's files say about its use: CPU time, memory (with the
//! working set as kubelet defines it), page faults, OOM kills, processes;
//! on cgroup v1 (one directory per controller hierarchy) and v2 (one
//! directory). Each read touches only the few files it needs; a file that
//! is missing or unreadable (a cgroup being removed) leaves its field
//! unknown, never an error.

use std::path::{Path, PathBuf};

/// Which layout the node's cgroups have, and where they are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v1 controllers under `root` (`root/memory`, `root/cpuacct`
    /// or `root/cpu,cpuacct`, `root/pids`), also on a hybrid host.
    V1 { root: PathBuf },
    /// The unified hierarchy at `root`.
    V2 { root: PathBuf },
}

/// Memory of a cgroup, in bytes (faults in counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// All memory charged (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub usage: u64,
    /// What kubelet evicts on: usage minus inactive file pages, never
    /// below 0.
    pub working_set: u64,
    /// Anonymous memory (v1 `total_rss`, v2 `anon`).
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// The limit, when one is set.
    pub limit: Option<u64>,
    /// OOM kills in this cgroup.
    pub oom_kills: u64,
}

impl Memory {
    /// What is left under the limit for the working set (kubelet's
    /// `available_bytes`), when there is a limit.
    pub fn available(&self) -> Option<u64> {
        self.limit.map(|l| l.saturating_sub(self.working_set))
    }
}

/// One read of a cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used, in nanoseconds.
    pub cpu_ns: Option<u64>,
    pub memory: Option<Memory>,
    /// Processes (and threads) in it.
    pub pids: Option<u64>,
}

/// v1 and v2 write "max" or a huge number for "no limit".
fn limit(v: u64) -> Option<u64> {
    // v1's unlimited is PAGE_COUNTER_MAX pages, rounded: above 2^62.
    (v < (1 << 62)).then_some(v)
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat, memory.events, oom_control).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

impl Layout {
    /// The layout mounted at `root` (normally `/sys/fs/cgroup`): v2 when
    /// it is a cgroup2 mount (it has `cgroup.controllers`), else v1.
    pub fn detect(root: &Path) -> Layout {
        if root.join("cgroup.controllers").exists() {
            Layout::V2 {
                root: root.to_owned(),
            }
        } else {
            Layout::V1 {
                root: root.to_owned(),
            }
        }
    }

    /// Reads the cgroup at `rel` (relative to the hierarchy roots).
    pub fn read(&self, rel: &str) -> Usage {
        let rel = rel.trim_start_matches('/');
        match self {
            Layout::V1 { root } => read_v1(root, rel),
            Layout::V2 { root } => read_v2(&root.join(rel)),
        }
    }
}

fn read_v1(root: &Path, rel: &str) -> Usage {
    let mem = root.join("memory").join(rel);
    let cpuacct = ["cpuacct", "cpu,cpuacct"]
        .iter()
        .map(|h| root.join(h))
        .find(|h| h.is_dir())
        .unwrap_or_else(|| root.join("cpuacct"));
    let memory = read_u64(&mem.join("memory.usage_in_bytes")).map(|usage| {
        let stat = std::fs::read_to_string(mem.join("memory.stat")).unwrap_or_default();
        let inactive = keyed(&stat, "total_inactive_file").unwrap_or(0);
        let oom = std::fs::read_to_string(mem.join("memory.oom_control")).unwrap_or_default();
        Memory {
            usage,
            working_set: usage.saturating_sub(inactive),
            rss: keyed(&stat, "total_rss").unwrap_or(0),
            page_faults: keyed(&stat, "total_pgfault").unwrap_or(0),
            major_page_faults: keyed(&stat, "total_pgmajfault").unwrap_or(0),
            limit: read_u64(&mem.join("memory.limit_in_bytes")).and_then(limit),
            oom_kills: keyed(&oom, "oom_kill").unwrap_or(0),
        }
    });
    Usage {
        cpu_ns: read_u64(&cpuacct.join(rel).join("cpuacct.usage")),
        memory,
        pids: read_u64(&root.join("pids").join(rel).join("pids.current")),
    }
}

fn read_v2(dir: &Path) -> Usage {
    let cpu = std::fs::read_to_string(dir.join("cpu.stat"))
        .ok()
        .and_then(|s| keyed(&s, "usage_usec"))
        .map(|us| us.saturating_mul(1000));
    let memory = read_u64(&dir.join("memory.current")).map(|usage| {
        let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
        let inactive = keyed(&stat, "inactive_file").unwrap_or(0);
        let events = std::fs::read_to_string(dir.join("memory.events")).unwrap_or_default();
        Memory {
            usage,
            working_set: usage.saturating_sub(inactive),
            rss: keyed(&stat, "anon").unwrap_or(0),
            page_faults: keyed(&stat, "pgfault").unwrap_or(0),
            major_page_faults: keyed(&stat, "pgmajfault").unwrap_or(0),
            limit: std::fs::read_to_string(dir.join("memory.max"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .and_then(limit),
            oom_kills: keyed(&events, "oom_kill").unwrap_or(0),
        }
    });
    Usage {
        cpu_ns: cpu,
        memory,
        pids: read_u64(&dir.join("pids.current")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
    }

    /// A v1 tree built from the captured files (testdata/v1, read off a
    /// cgroup v1 host) at `<root>/<controller>/<rel>/`.
    fn v1_tree(rel: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let src = testdata().join("v1");
        for (ctl, files) in [
            (
                "memory",
                &[
                    "memory.stat",
                    "memory.usage_in_bytes",
                    "memory.limit_in_bytes",
                    "memory.oom_control",
                ][..],
            ),
            ("cpuacct", &["cpuacct.usage"][..]),
            ("pids", &["pids.current"][..]),
        ] {
            let dir = d.path().join(ctl).join(rel);
            std::fs::create_dir_all(&dir).unwrap();
            for f in files {
                std::fs::copy(src.join(f), dir.join(f)).unwrap();
            }
        }
        d
    }

    #[test]
    fn v1_files_read_as_kubelet_reads_them() {
        let d = v1_tree("berth/pod/ctr");
        let u = Layout::V1 {
            root: d.path().to_owned(),
        }
        .read("/berth/pod/ctr");
        let m = u.memory.unwrap();
        assert_eq!(m.usage, 9_442_443_264);
        // usage - total_inactive_file
        assert_eq!(m.working_set, 9_442_443_264 - 4_431_962_112);
        assert_eq!(m.rss, 1_657_204_736);
        assert_eq!((m.page_faults, m.major_page_faults), (291_140_587, 91_622));
        assert_eq!(m.limit, None, "v1's 'unlimited' is no limit");
        assert_eq!(m.available(), None);
        assert_eq!(m.oom_kills, 0);
        assert_eq!(u.cpu_ns, Some(12_768_282_521_689));
        assert_eq!(u.pids, Some(7));
    }

    #[test]
    fn v2_files_read_as_kubelet_reads_them() {
        let d = tempfile::tempdir().unwrap();
        let src = testdata().join("v2");
        for f in [
            "cpu.stat",
            "memory.current",
            "memory.stat",
            "memory.max",
            "memory.events",
            "pids.current",
        ] {
            std::fs::copy(src.join(f), d.path().join(f)).unwrap();
        }
        let u = Layout::V2 {
            root: d.path().parent().unwrap().to_owned(),
        }
        .read(d.path().file_name().unwrap().to_str().unwrap());
        assert_eq!(u.cpu_ns, Some(12_689_466_294 * 1000));
        let m = u.memory.unwrap();
        assert_eq!(m.usage, 52_428_800);
        assert_eq!(m.working_set, 52_428_800 - 10_485_760);
        assert_eq!(m.rss, 31_457_280);
        assert_eq!((m.page_faults, m.major_page_faults), (24_713, 12));
        assert_eq!(m.limit, Some(134_217_728));
        assert_eq!(m.available(), Some(134_217_728 - (52_428_800 - 10_485_760)));
        assert_eq!(m.oom_kills, 2);
        assert_eq!(u.pids, Some(3));
        // "max" is no limit.
        std::fs::write(d.path().join("memory.max"), "max\n").unwrap();
        let u = Layout::V2 {
            root: d.path().to_owned(),
        }
        .read("");
        assert_eq!(u.memory.unwrap().limit, None);
    }

    #[test]
    fn a_vanished_cgroup_reads_as_unknown_not_an_error() {
        let d = tempfile::tempdir().unwrap();
        for l in [
            Layout::V1 {
                root: d.path().to_owned(),
            },
            Layout::V2 {
                root: d.path().to_owned(),
            },
        ] {
            assert_eq!(l.read("/gone"), Usage::default());
        }
    }

    #[test]
    fn working_set_never_goes_below_zero() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("memory.current"), "100\n").unwrap();
        std::fs::write(d.path().join("memory.stat"), "inactive_file 4096\n").unwrap();
        let m = Layout::V2 {
            root: d.path().to_owned(),
        }
        .read("")
        .memory
        .unwrap();
        assert_eq!(m.working_set, 0);
    }
}
