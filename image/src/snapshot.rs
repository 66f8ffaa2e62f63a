//! Unpacked layers on disk: one directory per chain ID, used as overlay
//! lower dirs. A snapshot is built in `.ingest/` and renamed into place
//! whole, so a snapshot directory either is complete or does not exist.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::Digest;

#[derive(Debug)]
pub struct Snapshots {
    dir: PathBuf,
    ingest: PathBuf,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A snapshot being built; removed on drop unless committed.
#[derive(Debug)]
pub struct Pending {
    dir: PathBuf,
    done: bool,
}

impl Pending {
    /// The directory to unpack into.
    pub fn fs(&self) -> PathBuf {
        self.dir.join("fs")
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl Snapshots {
    /// Opens `<root>/snapshots` (mode 0700: layers hold setuid binaries
    /// that no unprivileged host user may reach) and clears half-built ones.
    pub fn open(root: &Path) -> io::Result<Snapshots> {
        let dir = root.join("snapshots");
        let ingest = dir.join(".ingest");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        if ingest.exists() {
            fs::remove_dir_all(&ingest)?;
        }
        fs::create_dir(&ingest)?;
        Ok(Snapshots { dir, ingest })
    }

    pub fn root(&self) -> &Path {
        &self.dir
    }

    /// The overlay lower dir of a committed snapshot.
    pub fn fs(&self, chain: &Digest) -> PathBuf {
        self.dir.join(chain.hex()).join("fs")
    }

    pub fn exists(&self, chain: &Digest) -> bool {
        self.fs(chain).is_dir()
    }

    pub fn prepare(&self, chain: &Digest) -> io::Result<Pending> {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = self.ingest.join(format!("{}-{n}", chain.hex()));
        fs::create_dir(&dir)?;
        fs::DirBuilder::new().mode(0o755).create(dir.join("fs"))?;
        Ok(Pending { dir, done: false })
    }

    /// Moves a fully unpacked snapshot into place. If another pull
    /// committed the same chain meanwhile, ours is dropped.
    pub fn commit(&self, mut pending: Pending, chain: &Digest) -> io::Result<()> {
        let dest = self.dir.join(chain.hex());
        if dest.exists() {
            return Ok(()); // `pending` is removed on drop
        }
        fs::rename(&pending.dir, &dest)?;
        pending.done = true;
        Ok(())
    }

    pub fn remove(&self, chain: &Digest) -> io::Result<()> {
        let dest = self.dir.join(chain.hex());
        if !dest.exists() {
            return Ok(());
        }
        // Out of sight first, so it is never seen half-deleted.
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let trash = self.ingest.join(format!("rm-{}-{n}", chain.hex()));
        fs::rename(&dest, &trash)?;
        fs::remove_dir_all(&trash)
    }

    /// Chain IDs present on disk.
    pub fn list(&self) -> Vec<Digest> {
        fs::read_dir(&self.dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| Digest::parse_loose(&e.file_name().to_string_lossy()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_is_removed_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshots::open(dir.path()).unwrap();
        let c = Digest::of(b"c");
        let p = s.prepare(&c).unwrap();
        fs::write(p.fs().join("f"), "x").unwrap();
        drop(p);
        assert!(!s.exists(&c));
        let p = s.prepare(&c).unwrap();
        fs::write(p.fs().join("f"), "x").unwrap();
        s.commit(p, &c).unwrap();
        assert_eq!(fs::read_to_string(s.fs(&c).join("f")).unwrap(), "x");
        assert_eq!(s.list(), vec![c]);
        s.remove(&c).unwrap();
        assert!(!s.exists(&c) && s.list().is_empty());
        assert_eq!(
            fs::read_dir(dir.path().join("snapshots/.ingest"))
                .unwrap()
                .count(),
            0
        );
    }
}
