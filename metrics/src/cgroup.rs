//! What a cgroup's files say about its use: CPU time, memory (with the
//! working set as kubelet defines it), page faults, OOM kills, processes;
//! on cgroup v1 (one directory per controller hierarchy) and v2 (one
//! directory). Each read touches only the few files it needs; a file that
//! is missing or unreadable (a cgroup being removed) leaves its field
//! unknown, never an error.

use std::path::{Path, PathBuf};

use crate::kfile::{Dir, Reader, fields};

/// Which layout the node's cgroups have, and where they are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v1 controllers (also on a hybrid host), each hierarchy's
    /// mount point found once, when the layout is detected.
    V1(V1Mounts),
    /// The unified hierarchy at `root`.
    V2 { root: PathBuf },
}

/// Where the v1 controllers berth reads are mounted: `root/memory`,
/// `root/cpuacct` or `root/cpu,cpuacct`, `root/cpu`, `root/pids`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Mounts {
    pub memory: PathBuf,
    pub cpuacct: PathBuf,
    pub cpu: PathBuf,
    pub pids: PathBuf,
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
    /// Page cache (v1 `total_cache`, v2 `file`).
    pub cache: u64,
    /// Memory-mapped files (v1 `total_mapped_file`, v2 `file_mapped`).
    pub mapped_file: u64,
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

/// CPU time a cgroup used, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cpu {
    pub usage_ns: u64,
    pub user_ns: u64,
    pub system_ns: u64,
    /// CFS bandwidth enforcement, when the cpu controller is there.
    pub throttling: Option<Throttling>,
}

/// How often a CPU quota held a cgroup back (`cpu.stat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

/// What a cgroup is promised and held to, as berth (or the runtime)
/// wrote it: what kubelet asked for as requests and limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// CPU shares in v1 units (2..262144, 1024 = one CPU requested); v2's
    /// `cpu.weight` converted back the way kubelet converts shares to it.
    pub cpu_shares: Option<u64>,
    /// CPU quota per period in microseconds, when there is a quota.
    pub cpu_quota: Option<(u64, u64)>,
}

impl Limits {
    /// The CPU request the shares stand for, in cores (kubelet writes
    /// shares = request × 1024, and 2, the minimum, for no request).
    pub fn cpu_request_cores(&self) -> Option<f64> {
        let s = self.cpu_shares?;
        Some(if s <= 2 { 0.0 } else { s as f64 / 1024.0 })
    }
    /// The CPU limit the quota stands for, in cores.
    pub fn cpu_limit_cores(&self) -> Option<f64> {
        let (q, p) = self.cpu_quota?;
        (p > 0).then(|| q as f64 / p as f64)
    }
}

/// One read of a cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu: Option<Cpu>,
    pub memory: Option<Memory>,
    /// Processes (and threads) in it.
    pub pids: Option<u64>,
    pub limits: Limits,
}

impl Usage {
    /// CPU time used, in nanoseconds.
    pub fn cpu_ns(&self) -> Option<u64> {
        self.cpu.map(|c| c.usage_ns)
    }

    /// Takes the settings (limits) of `prev`, a read that had them, for
    /// a read that skipped them.
    pub fn keep_settings(&mut self, prev: &Usage) {
        self.limits = prev.limits;
        if let (Some(m), Some(p)) = (self.memory.as_mut(), prev.memory) {
            m.limit = p.limit;
        }
    }
}

/// v1 and v2 write "max" or a huge number for "no limit".
fn limit(v: u64) -> Option<u64> {
    // v1's unlimited is PAGE_COUNTER_MAX pages, rounded: above 2^62.
    (v < (1 << 62)).then_some(v)
}

/// v2's `cpu.weight` (1..10000) back to v1 shares. Runtimes write
/// `weight = 1 + (shares - 2) * 9999 / 262142`, which maps about 26
/// shares to each weight; the middle of that range comes back (within 13
/// shares, 13 millicores, of what was asked), except weight 1, which is
/// a BestEffort pod's 2 shares far more often than anything else.
pub fn weight_to_shares(weight: u64) -> u64 {
    match weight.clamp(1, 10_000) {
        1 => 2,
        w => 2 + (2 * w - 1) * 262_142 / (2 * 9_999),
    }
}

/// Clock ticks per second, the unit of v1's `cpuacct.stat`.
fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

fn throttling(stat: &str, throttled_key: &str, unit_ns: u64) -> Option<Throttling> {
    let [periods, throttled, time] = fields(stat, ["nr_periods", "nr_throttled", throttled_key]);
    Some(Throttling {
        periods: periods?,
        throttled_periods: throttled?,
        throttled_ns: time?.saturating_mul(unit_ns),
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
            Layout::v1(root)
        }
    }

    /// The v1 layout under `root`, its controllers' mount points found
    /// now rather than at each read.
    pub fn v1(root: &Path) -> Layout {
        Layout::V1(V1Mounts {
            memory: root.join("memory"),
            cpuacct: hierarchy(root, &["cpuacct", "cpu,cpuacct"]),
            cpu: hierarchy(root, &["cpu", "cpu,cpuacct"]),
            pids: root.join("pids"),
        })
    }

    /// Reads the cgroup at `rel` (relative to the hierarchy roots): its
    /// use and its settings.
    pub fn read(&self, rel: &str) -> Usage {
        self.read_use(rel, true)
    }

    /// Reads the cgroup at `rel`; its settings (CPU shares and quota, the
    /// memory limit: a third of the files, and they change only when
    /// resources are updated) only when `settings`, else they are left
    /// unknown for the caller to carry over ([`Usage::keep_settings`]).
    pub fn read_use(&self, rel: &str, settings: bool) -> Usage {
        let rel = rel.trim_start_matches('/');
        let mut r = Reader::default();
        match self {
            Layout::V1(m) => read_v1(m, rel, &mut r, settings),
            Layout::V2 { root } => read_v2(Dir::open(&root.join(rel)).as_ref(), &mut r, settings),
        }
    }
}

/// The first of `names` that is a controller hierarchy under `root`.
fn hierarchy(root: &Path, names: &[&str]) -> PathBuf {
    names
        .iter()
        .map(|h| root.join(h))
        .find(|h| h.is_dir())
        .unwrap_or_else(|| root.join(names[0]))
}

/// Where one cgroup version keeps what [`Memory`] holds: the usage file,
/// memory.stat's keys (inactive file pages, anonymous, page cache, mapped
/// files, faults, major faults), the file with `oom_kill`, the limit.
struct MemoryFiles {
    usage: &'static str,
    stat: [&'static str; 6],
    events: &'static str,
    limit: &'static str,
}

const V1_MEMORY: MemoryFiles = MemoryFiles {
    usage: "memory.usage_in_bytes",
    stat: [
        "total_inactive_file",
        "total_rss",
        "total_cache",
        "total_mapped_file",
        "total_pgfault",
        "total_pgmajfault",
    ],
    events: "memory.oom_control",
    limit: "memory.limit_in_bytes",
};

const V2_MEMORY: MemoryFiles = MemoryFiles {
    usage: "memory.current",
    stat: [
        "inactive_file",
        "anon",
        "file",
        "file_mapped",
        "pgfault",
        "pgmajfault",
    ],
    events: "memory.events",
    limit: "memory.max",
};

/// The memory of the cgroup at `dir` (its limit only when `settings`);
/// None without a usage file (no memory controller, or the cgroup gone).
fn read_memory(
    r: &mut Reader,
    dir: Option<&Dir>,
    f: &MemoryFiles,
    settings: bool,
) -> Option<Memory> {
    let usage = r.u64(dir, f.usage)?;
    let [inactive, rss, cache, mapped, faults, major] =
        fields(r.text(dir, "memory.stat").unwrap_or_default(), f.stat);
    let [oom] = fields(r.text(dir, f.events).unwrap_or_default(), ["oom_kill"]);
    Some(Memory {
        usage,
        working_set: usage.saturating_sub(inactive.unwrap_or(0)),
        rss: rss.unwrap_or(0),
        cache: cache.unwrap_or(0),
        mapped_file: mapped.unwrap_or(0),
        page_faults: faults.unwrap_or(0),
        major_page_faults: major.unwrap_or(0),
        // v2's "max" does not parse: no limit, as v1's huge value.
        limit: settings
            .then(|| r.u64(dir, f.limit))
            .flatten()
            .and_then(limit),
        oom_kills: oom.unwrap_or(0),
    })
}

fn read_v1(m: &V1Mounts, rel: &str, r: &mut Reader, settings: bool) -> Usage {
    let mem = Dir::open(&m.memory.join(rel));
    let mem = mem.as_ref();
    let cpuacct = Dir::open(&m.cpuacct.join(rel));
    let cpuacct = cpuacct.as_ref();
    // cpu and cpuacct are one directory when co-mounted.
    let cpu_own = (m.cpu != m.cpuacct)
        .then(|| Dir::open(&m.cpu.join(rel)))
        .flatten();
    let cpu_dir = if m.cpu == m.cpuacct {
        cpuacct
    } else {
        cpu_own.as_ref()
    };
    let memory = read_memory(r, mem, &V1_MEMORY, settings);
    let cpu = r.u64(cpuacct, "cpuacct.usage").map(|usage_ns| {
        let tick_ns = 1_000_000_000 / clock_ticks();
        let [user, system] = fields(
            r.text(cpuacct, "cpuacct.stat").unwrap_or_default(),
            ["user", "system"],
        );
        Cpu {
            usage_ns,
            user_ns: user.unwrap_or(0).saturating_mul(tick_ns),
            system_ns: system.unwrap_or(0).saturating_mul(tick_ns),
            throttling: throttling(
                r.text(cpu_dir, "cpu.stat").unwrap_or_default(),
                "throttled_time",
                1,
            ),
        }
    });
    let limits = if settings {
        let quota = r
            .text(cpu_dir, "cpu.cfs_quota_us")
            .and_then(|q| q.trim().parse::<i64>().ok())
            .and_then(|q| u64::try_from(q).ok());
        let period = r.u64(cpu_dir, "cpu.cfs_period_us");
        Limits {
            cpu_shares: r.u64(cpu_dir, "cpu.shares"),
            cpu_quota: quota.zip(period),
        }
    } else {
        Limits::default()
    };
    let pids = Dir::open(&m.pids.join(rel));
    Usage {
        cpu,
        memory,
        pids: r.u64(pids.as_ref(), "pids.current"),
        limits,
    }
}

fn read_v2(dir: Option<&Dir>, r: &mut Reader, settings: bool) -> Usage {
    let cpu = r.text(dir, "cpu.stat").and_then(|s| {
        let [usage, user, system] = fields(s, ["usage_usec", "user_usec", "system_usec"]);
        Some(Cpu {
            usage_ns: usage?.saturating_mul(1000),
            user_ns: user.unwrap_or(0).saturating_mul(1000),
            system_ns: system.unwrap_or(0).saturating_mul(1000),
            throttling: throttling(s, "throttled_usec", 1000),
        })
    });
    let memory = read_memory(r, dir, &V2_MEMORY, settings);
    let limits = if settings {
        // cpu.max: "$QUOTA $PERIOD", QUOTA "max" for none.
        let cpu_quota = r.text(dir, "cpu.max").and_then(|s| {
            let mut f = s.split_whitespace();
            let q = f.next()?.parse().ok()?;
            let p = f.next()?.parse().ok()?;
            Some((q, p))
        });
        Limits {
            cpu_shares: r.u64(dir, "cpu.weight").map(weight_to_shares),
            cpu_quota,
        }
    } else {
        Limits::default()
    };
    Usage {
        cpu,
        memory,
        pids: r.u64(dir, "pids.current"),
        limits,
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
            ("cpuacct", &["cpuacct.usage", "cpuacct.stat"][..]),
            (
                "cpu",
                &[
                    "cpu.stat",
                    "cpu.shares",
                    "cpu.cfs_quota_us",
                    "cpu.cfs_period_us",
                ][..],
            ),
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
        let u = Layout::v1(d.path()).read("/berth/pod/ctr");
        let m = u.memory.unwrap();
        assert_eq!(m.usage, 9_442_443_264);
        // usage - total_inactive_file
        assert_eq!(m.working_set, 9_442_443_264 - 4_431_962_112);
        assert_eq!(m.rss, 1_657_204_736);
        assert_eq!((m.page_faults, m.major_page_faults), (291_140_587, 91_622));
        assert_eq!(m.limit, None, "v1's 'unlimited' is no limit");
        assert_eq!(m.available(), None);
        assert_eq!(m.oom_kills, 0);
        assert_eq!((m.cache, m.mapped_file), (7_084_228_608, 135_905_280));
        assert_eq!(u.cpu_ns(), Some(12_768_282_521_689));
        let cpu = u.cpu.unwrap();
        // cpuacct.stat counts clock ticks (USER_HZ, 100 here).
        let tick = 1_000_000_000 / clock_ticks();
        assert_eq!((cpu.user_ns, cpu.system_ns), (53 * tick, tick));
        assert_eq!(
            cpu.throttling,
            Some(Throttling {
                periods: 22,
                throttled_periods: 1,
                throttled_ns: 2_300_024,
            })
        );
        assert_eq!(u.pids, Some(7));
        assert_eq!(u.limits.cpu_shares, Some(512));
        assert_eq!(u.limits.cpu_request_cores(), Some(0.5));
        assert_eq!(u.limits.cpu_quota, Some((50_000, 100_000)));
        assert_eq!(u.limits.cpu_limit_cores(), Some(0.5));
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
        assert_eq!(u.cpu_ns(), Some(12_689_466_294 * 1000));
        let m = u.memory.unwrap();
        assert_eq!(m.usage, 52_428_800);
        assert_eq!(m.working_set, 52_428_800 - 10_485_760);
        assert_eq!(m.rss, 31_457_280);
        assert_eq!((m.page_faults, m.major_page_faults), (24_713, 12));
        assert_eq!(m.limit, Some(134_217_728));
        assert_eq!(m.available(), Some(134_217_728 - (52_428_800 - 10_485_760)));
        assert_eq!(m.oom_kills, 2);
        assert_eq!(u.pids, Some(3));
        let cpu = u.cpu.unwrap();
        assert_eq!(
            (cpu.user_ns, cpu.system_ns),
            (10_308_977_147_000, 2_380_489_147_000)
        );
        assert_eq!(cpu.throttling, None, "no cpu controller: no cfs stats");
        assert_eq!(u.limits, Limits::default());
        // "max" is no limit.
        std::fs::write(d.path().join("memory.max"), "max\n").unwrap();
        // The cpu controller's files, as cgroup-v2.rst writes them.
        std::fs::write(d.path().join("cpu.max"), "50000 100000\n").unwrap();
        std::fs::write(d.path().join("cpu.weight"), "20\n").unwrap();
        let u = Layout::V2 {
            root: d.path().to_owned(),
        }
        .read("");
        assert_eq!(u.memory.unwrap().limit, None);
        assert_eq!(u.limits.cpu_limit_cores(), Some(0.5));
        // Runtimes write weight 20 for 512 shares (half a CPU).
        assert_eq!(u.limits.cpu_shares, Some(513));
        // Within the millicore: 500 millicores when truncated.
        let millis = u.limits.cpu_request_cores().unwrap() * 1000.0;
        assert_eq!(millis as u64, 500, "{millis}");
        std::fs::write(d.path().join("cpu.max"), "max 100000\n").unwrap();
        let u = Layout::V2 {
            root: d.path().to_owned(),
        }
        .read("");
        assert_eq!(u.limits.cpu_quota, None);
    }

    #[test]
    fn settings_are_skipped_when_asked_and_carried_over() {
        let d = v1_tree("pod/ctr");
        let l = Layout::v1(d.path());
        std::fs::write(
            d.path().join("memory/pod/ctr/memory.limit_in_bytes"),
            "4096\n",
        )
        .unwrap();
        let full = l.read("pod/ctr");
        assert_eq!(full.memory.unwrap().limit, Some(4096));
        let mut quick = l.read_use("pod/ctr", false);
        assert_eq!(quick.limits, Limits::default());
        assert_eq!(quick.memory.unwrap().limit, None);
        assert_eq!(quick.cpu_ns(), full.cpu_ns(), "use is read all the same");
        quick.keep_settings(&full);
        assert_eq!(quick, full);
    }

    #[test]
    fn a_vanished_cgroup_reads_as_unknown_not_an_error() {
        let d = tempfile::tempdir().unwrap();
        for l in [
            Layout::v1(d.path()),
            Layout::V2 {
                root: d.path().to_owned(),
            },
        ] {
            assert_eq!(l.read("/gone"), Usage::default());
        }
    }

    #[test]
    fn weights_come_back_as_the_shares_runtimes_converted() {
        let to_weight = |shares: u64| 1 + (shares - 2) * 9_999 / 262_142;
        for shares in [2u64, 102, 512, 1024, 2048, 262_144] {
            let back = weight_to_shares(to_weight(shares));
            assert!(back.abs_diff(shares) <= 13, "{shares} came back as {back}");
        }
        assert_eq!(weight_to_shares(1), 2);
    }

    #[test]
    fn requests_and_limits_in_cores() {
        let l = |shares, quota| Limits {
            cpu_shares: shares,
            cpu_quota: quota,
        };
        assert_eq!(l(Some(512), None).cpu_request_cores(), Some(0.5));
        assert_eq!(
            l(Some(2), None).cpu_request_cores(),
            Some(0.0),
            "no request"
        );
        assert_eq!(l(None, None).cpu_request_cores(), None);
        assert_eq!(
            l(None, Some((150_000, 100_000))).cpu_limit_cores(),
            Some(1.5)
        );
        assert_eq!(l(None, Some((1, 0))).cpu_limit_cores(), None);
        assert_eq!(l(None, None).cpu_limit_cores(), None);
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
