//! Samples of what each pod and container uses, kept in memory so that
//! stats calls are answered from them: a tick (berthd's, default 10 s as
//! kubelet's housekeeping) reads every object, and an object with no
//! sample yet (new since the tick) is read on demand, at most once per
//! `min_interval`. Each sample carries the time it was read (one timestamp
//! for a whole pass would distort the CPU rate under load); the CPU rate
//! comes from an object's two latest samples. A sample never waits on a
//! container's lifecycle: the collector reads files only.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cgroup::{Layout, Usage};
use crate::disk::DiskUsage;
use crate::netdev::Interface;

/// What to read for one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Its cgroup, relative to the hierarchy roots.
    pub cgroup: Option<String>,
    /// Its writable layer (a container's overlay upper dir).
    pub upper: Option<PathBuf>,
    /// Its pinned network namespace (a pod's).
    pub netns: Option<PathBuf>,
}

/// One object's latest sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    /// When the cgroup was read, in nanoseconds since the epoch.
    pub at: i64,
    pub usage: Usage,
    /// CPU use between the previous sample and this one, in nanocores
    /// (1e9 = one core busy); None until there are two samples.
    pub nano_cores: Option<u64>,
    /// The writable layer, and when it was walked.
    pub disk: Option<(i64, DiskUsage)>,
    /// The network interfaces, and when they were read.
    pub net: Option<(i64, Vec<Interface>)>,
}

#[derive(Debug)]
struct Entry {
    sample: Sample,
    /// When it was last read (monotonic), for the on-demand limit.
    read: Instant,
    /// Its settings changed: the next tick reads them.
    stale_settings: bool,
}

impl Entry {
    fn new(sample: Sample) -> Entry {
        Entry {
            sample,
            read: Instant::now(),
            stale_settings: false,
        }
    }
}

#[derive(Debug)]
pub struct Collector {
    layout: Layout,
    min_interval: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The CPU rate between two samples, in nanocores.
fn rate(prev: &Sample, at: i64, cpu: Option<u64>) -> Option<u64> {
    let (Some(before), Some(after)) = (prev.usage.cpu_ns(), cpu) else {
        return None;
    };
    let dt = u128::try_from(at.checked_sub(prev.at)?).ok()?;
    if dt == 0 {
        return None;
    }
    let used = u128::from(after.checked_sub(before)?);
    u64::try_from(used * 1_000_000_000 / dt).ok()
}

impl Collector {
    pub fn new(layout: Layout, min_interval: Duration) -> Collector {
        Collector {
            layout,
            min_interval,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Reads `target`'s cgroup (its settings only when `slow`, or when
    /// there is no earlier read to carry them over from) and, when
    /// `slow`, walks its writable layer; not its network namespace.
    fn read(&self, target: &Target, prev: Option<&Sample>, slow: bool) -> Sample {
        let at = now_ns();
        let settings = slow || prev.is_none();
        let mut usage = target
            .cgroup
            .as_deref()
            .map(|c| self.layout.read_use(c, settings))
            .unwrap_or_default();
        if let Some(p) = prev.filter(|_| !settings) {
            usage.keep_settings(&p.usage);
        }
        let nano_cores = prev.and_then(|p| rate(p, at, usage.cpu_ns()));
        let disk = if slow || prev.is_none_or(|p| p.disk.is_none()) {
            target
                .upper
                .as_deref()
                .and_then(crate::disk::usage)
                .map(|d| (now_ns(), d))
        } else {
            prev.and_then(|p| p.disk)
        };
        Sample {
            at,
            usage,
            nano_cores,
            disk,
            net: None,
        }
    }

    /// The network counters of every target with a namespace, by index
    /// in `targets`, each with the time it was read.
    fn read_nets(targets: &[(String, Target)]) -> Vec<Option<(i64, Vec<Interface>)>> {
        let (index, paths): (Vec<usize>, Vec<&std::path::Path>) = targets
            .iter()
            .enumerate()
            .filter_map(|(i, (_, t))| t.netns.as_deref().map(|n| (i, n)))
            .unzip();
        let mut nets = vec![None; targets.len()];
        crate::netdev::read_many(&paths, |j, r| nets[index[j]] = r.map(|n| (now_ns(), n)));
        nets
    }

    /// The tick: reads every object in `targets` and forgets the samples
    /// of objects no longer there. When `slow`, it also walks writable
    /// layers and re-reads cgroup settings (a walk costs more than every
    /// other read, and settings change only on updates, which
    /// [`Collector::settings_changed`] flags): those run on a slower
    /// clock. The network namespaces are read on one thread, one after
    /// the other.
    pub fn sample_all(&self, targets: &[(String, Target)], slow: bool) {
        let prev: HashMap<String, (Sample, bool)> = {
            let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            targets
                .iter()
                .filter_map(|(k, _)| {
                    e.get(k)
                        .map(|x| (k.clone(), (x.sample.clone(), x.stale_settings)))
                })
                .collect()
        };
        // Read outside the lock: a stats call answers meanwhile.
        let mut nets = Self::read_nets(targets);
        let fresh: HashMap<String, Entry> = targets
            .iter()
            .zip(nets.iter_mut())
            .map(|((k, t), net)| {
                let (p, stale) = prev.get(k).map_or((None, false), |(p, s)| (Some(p), *s));
                let mut sample = self.read(t, p, slow || stale);
                sample.net = net.take();
                (k.clone(), Entry::new(sample))
            })
            .collect();
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        *e = fresh;
    }

    /// The latest sample of `key`; read now when there is none, at most
    /// once per `min_interval` (an object the tick has not seen yet).
    pub fn get(&self, key: &str, target: &Target) -> Sample {
        {
            let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(x) = e.get(key)
                && (x.sample.at != 0 || x.read.elapsed() < self.min_interval)
            {
                return x.sample.clone();
            }
        }
        let mut sample = self.read(target, None, true);
        sample.net = target
            .netns
            .as_deref()
            .and_then(crate::netdev::read_in)
            .map(|n| (now_ns(), n));
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.insert(key.to_owned(), Entry::new(sample.clone()));
        sample
    }

    /// `key`'s cgroup settings (limits) changed: the next tick reads them
    /// rather than carrying the old ones over.
    pub fn settings_changed(&self, key: &str) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(x) = e.get_mut(key) {
            x.stale_settings = true;
        }
    }

    /// How many objects have a sample.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no object has a sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(dir: &std::path::Path, cpu_usec: u64, mem: u64) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("cpu.stat"), format!("usage_usec {cpu_usec}\n")).unwrap();
        std::fs::write(dir.join("memory.current"), format!("{mem}\n")).unwrap();
    }

    #[test]
    fn the_tick_samples_and_calls_are_served_from_it() {
        let d = tempfile::tempdir().unwrap();
        let c = Collector::new(
            Layout::V2 {
                root: d.path().to_owned(),
            },
            Duration::from_secs(1),
        );
        let t = Target {
            cgroup: Some("/pod/a".into()),
            ..Default::default()
        };
        v2(&d.path().join("pod/a"), 1_000_000, 4096);
        c.sample_all(&[("a".into(), t.clone())], true);
        let first = c.get("a", &t);
        assert_eq!(first.usage.cpu_ns(), Some(1_000_000_000));
        assert_eq!(first.nano_cores, None, "one sample: no rate yet");
        // The files change; calls still answer the tick's sample.
        v2(&d.path().join("pod/a"), 3_000_000, 8192);
        assert_eq!(c.get("a", &t), first);
        std::thread::sleep(Duration::from_millis(20));
        c.sample_all(&[("a".into(), t.clone())], true);
        let second = c.get("a", &t);
        assert!(second.at > first.at);
        let cores = second.nano_cores.unwrap();
        // 2 s of CPU over ~20 ms: far more than one core, as computed.
        let expect = 2_000_000_000u128 * 1_000_000_000 / (second.at - first.at) as u128;
        assert_eq!(u128::from(cores), expect);
        // An object gone from the tick is forgotten.
        c.sample_all(&[], true);
        assert!(c.is_empty());
    }

    #[test]
    fn settings_are_read_on_the_slow_clock_or_when_flagged() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("c");
        v2(&dir, 1, 100);
        let max = |v: &str| std::fs::write(dir.join("memory.max"), v).unwrap();
        max("4096\n");
        let c = Collector::new(
            Layout::V2 {
                root: d.path().to_owned(),
            },
            Duration::from_secs(1),
        );
        let t = [(
            "c".to_owned(),
            Target {
                cgroup: Some("c".into()),
                ..Default::default()
            },
        )];
        let limit = |c: &Collector| c.get("c", &t[0].1).usage.memory.unwrap().limit;
        // A first read has them even on a fast tick.
        c.sample_all(&t, false);
        assert_eq!(limit(&c), Some(4096));
        // Changed behind the collector's back: carried over until the
        // slow clock...
        max("8192\n");
        c.sample_all(&t, false);
        assert_eq!(limit(&c), Some(4096));
        c.sample_all(&t, true);
        assert_eq!(limit(&c), Some(8192));
        // ... or until an update flags them.
        max("max\n");
        c.settings_changed("c");
        c.sample_all(&t, false);
        assert_eq!(limit(&c), None);
        max("1024\n");
        c.sample_all(&t, false);
        assert_eq!(limit(&c), None, "the flag is spent");
    }

    #[test]
    fn a_new_object_is_read_on_demand() {
        let d = tempfile::tempdir().unwrap();
        v2(&d.path().join("b"), 5, 100);
        let c = Collector::new(
            Layout::V2 {
                root: d.path().to_owned(),
            },
            Duration::from_secs(1),
        );
        let s = c.get(
            "b",
            &Target {
                cgroup: Some("b".into()),
                ..Default::default()
            },
        );
        assert_eq!(s.usage.memory.unwrap().usage, 100);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn rates_need_time_and_growth() {
        let s = |at, cpu| Sample {
            at,
            usage: Usage {
                cpu: Some(crate::cgroup::Cpu {
                    usage_ns: cpu,
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            rate(&s(0, 0), 1_000_000_000, Some(500_000_000)),
            Some(500_000_000)
        );
        assert_eq!(rate(&s(10, 0), 10, Some(5)), None, "no time passed");
        assert_eq!(rate(&s(0, 10), 100, Some(5)), None, "a counter reset");
    }
}
