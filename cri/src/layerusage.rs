//! The disk use of containers' writable layers (their overlay upper dirs,
//! `<root>/containers/<id>/upper`), for ImageFsInfo's
//! `container_filesystems`.
//!
//! ImageFsInfo must cost the same on a node of 250 pods as on an empty
//! one (kubelet calls it every few seconds; it took 6 ms at 250 pods when
//! it parsed the mount table, which grows with every rootfs, on each
//! call). A writable layer's size is known only by walking it, so no call
//! walks: a call answers the last measurement, with the time it was made,
//! and when that is older than `[metrics] disk_interval` starts one new
//! walk of every upper dir in the background (at most one at a time). So
//! the walks follow kubelet's calls at most once per interval, never per
//! call or per pod; only the very first call waits for one. kubelet reads
//! `used_bytes` as the runtime's own use of the filesystem, not the
//! filesystem's (the CRI's FilesystemUsage), so statvfs would not do.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_util::time::now_ns;

/// One measurement of every writable layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub bytes: u64,
    pub inodes: u64,
    /// When the walk started (ns since the epoch).
    pub at_ns: i64,
}

/// The writable layers' use, measured at most once per interval.
#[derive(Debug)]
pub struct WritableLayers {
    containers: PathBuf,
    interval: Duration,
    latest: Mutex<Option<Sample>>,
    walking: AtomicBool,
    mountpoint: berth_mountinfo::MountPointCache,
}

/// Whether a sample taken at `at_ns` is still good at `now_ns`.
fn fresh(at_ns: i64, now_ns: i64, interval: Duration) -> bool {
    let age = now_ns.saturating_sub(at_ns);
    age >= 0 && (age as u128) < interval.as_nanos()
}

/// Walks every `<containers>/<id>/upper` (the writable layers; rootfs
/// mounts and bundles are not counted).
pub fn measure(containers: &Path) -> Sample {
    let at_ns = now_ns();
    let mut s = Sample {
        bytes: 0,
        inodes: 0,
        at_ns,
    };
    let Ok(entries) = std::fs::read_dir(containers) else {
        return s;
    };
    for e in entries.flatten() {
        if let Some(u) = berth_metrics::disk::usage(&e.path().join("upper")) {
            s.bytes += u.bytes;
            s.inodes += u.inodes;
        }
    }
    s
}

impl WritableLayers {
    /// For the container directories under `containers`, measured again
    /// when a sample is older than `interval`.
    pub fn new(containers: &Path, interval: Duration) -> WritableLayers {
        WritableLayers {
            containers: containers.to_owned(),
            interval,
            latest: Mutex::new(None),
            walking: AtomicBool::new(false),
            mountpoint: berth_mountinfo::MountPointCache::new(containers),
        }
    }

    /// The mount point of the filesystem holding the writable layers.
    pub fn mountpoint(&self) -> PathBuf {
        self.mountpoint.get()
    }

    fn latest(&self) -> Option<Sample> {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn walk(&self) -> Sample {
        let s = measure(&self.containers);
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        if latest.is_none_or(|l| l.at_ns <= s.at_ns) {
            *latest = Some(s);
        }
        s
    }

    /// The last sample; a stale one starts a walk in the background, and
    /// only the first call ever waits for one.
    pub async fn sample(self: &Arc<Self>) -> Sample {
        match self.latest() {
            Some(s) if fresh(s.at_ns, now_ns(), self.interval) => s,
            Some(s) => {
                if !self.walking.swap(true, Ordering::AcqRel) {
                    let this = self.clone();
                    tokio::task::spawn_blocking(move || {
                        this.walk();
                        this.walking.store(false, Ordering::Release);
                    });
                }
                s
            }
            None => {
                let this = self.clone();
                match tokio::task::spawn_blocking(move || this.walk()).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "measuring writable layers");
                        Sample {
                            bytes: 0,
                            inodes: 0,
                            at_ns: now_ns(),
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_age_out_after_the_interval() {
        let i = Duration::from_secs(60);
        let s = 1_000_000_000_000;
        assert!(fresh(s, s, i));
        assert!(fresh(s, s + 59_999_999_999, i));
        assert!(!fresh(s, s + 60_000_000_000, i));
        // A clock stepped back: measure again.
        assert!(!fresh(s, s - 1, i));
    }

    #[test]
    fn only_upper_dirs_are_counted() {
        let d = tempfile::tempdir().unwrap();
        for id in ["a", "b"] {
            std::fs::create_dir_all(d.path().join(id).join("upper/dir")).unwrap();
            std::fs::create_dir_all(d.path().join(id).join("bundle")).unwrap();
            std::fs::write(
                d.path().join(id).join("bundle/config.json"),
                vec![1; 50_000],
            )
            .unwrap();
        }
        std::fs::write(d.path().join("a/upper/dir/f"), vec![7u8; 100_000]).unwrap();
        let s = measure(d.path());
        // Per container: upper and dir; a's file.
        assert_eq!(s.inodes, 5);
        assert!(s.bytes >= 100_000 && s.bytes < 150_000, "{s:?}");
        assert_eq!(measure(&d.path().join("gone")).inodes, 0);
    }

    #[tokio::test]
    async fn calls_answer_the_last_walk_and_refresh_it_when_stale() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/upper")).unwrap();
        let w = Arc::new(WritableLayers::new(d.path(), Duration::from_secs(3600)));
        let first = w.sample().await;
        assert_eq!(first.inodes, 1);
        // Fresh: the same sample, whatever changed on disk.
        std::fs::write(d.path().join("a/upper/f"), b"x").unwrap();
        assert_eq!(w.sample().await, first);
        // Stale: answered at once, and measured again behind the call.
        let w = Arc::new(WritableLayers::new(d.path(), Duration::ZERO));
        *w.latest.lock().unwrap() = Some(first);
        assert_eq!(w.sample().await, first);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while w.latest().is_some_and(|s| s.inodes != 2) {
            assert!(std::time::Instant::now() < deadline, "no background walk");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
