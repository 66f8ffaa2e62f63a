//! The content store: verified blobs at `<root>/content/blobs/sha256/<hex>`.
//!
//! A blob is written to `ingest/` while its digest and size are computed,
//! and renamed into place only if both match what was expected; anything
//! else is deleted. A crash leaves at most files in `ingest/`, which
//! [`ContentStore::open`] clears.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The bytes received do not hash to the digest they were asked for.
    #[error("blob {expected}: content has digest {actual}; rejected")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// The blob is not as long as its descriptor says.
    #[error("blob {digest}: expected {expected} bytes, got {actual}; rejected")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("content store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ContentError {
    fn io(path: &Path, source: io::Error) -> ContentError {
        ContentError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// The underlying I/O error, if any (to tell a full disk apart).
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            ContentError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

static INGEST_SEQ: AtomicU64 = AtomicU64::new(0);

impl ContentStore {
    /// Opens `<root>/content`, creating it, and drops partial ingests.
    pub fn open(root: &Path) -> Result<ContentStore, ContentError> {
        let base = root.join("content");
        let blobs = base.join("blobs/sha256");
        let ingest = base.join("ingest");
        fs::create_dir_all(&blobs).map_err(|e| ContentError::io(&blobs, e))?;
        if ingest.exists() {
            fs::remove_dir_all(&ingest).map_err(|e| ContentError::io(&ingest, e))?;
        }
        fs::create_dir_all(&ingest).map_err(|e| ContentError::io(&ingest, e))?;
        Ok(ContentStore { blobs, ingest })
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.blobs.join(d.hex())
    }

    pub fn exists(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    pub fn size(&self, d: &Digest) -> Option<u64> {
        fs::metadata(self.path(d)).ok().map(|m| m.len())
    }

    /// Starts writing a blob that must hash to `expected` (and be
    /// `expected_size` long, if known).
    pub fn ingest(
        &self,
        expected: Digest,
        expected_size: Option<u64>,
    ) -> Result<Ingest, ContentError> {
        let n = INGEST_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .ingest
            .join(format!("{}-{}-{n}", expected.hex(), std::process::id()));
        let file = File::create(&tmp).map_err(|e| ContentError::io(&tmp, e))?;
        Ok(Ingest {
            file,
            tmp,
            dest: self.path(&expected),
            hasher: Sha256::new(),
            written: 0,
            expected,
            expected_size,
            committed: false,
        })
    }

    /// Stores a small blob held in memory (manifests, configs).
    pub fn put(&self, expected: Digest, bytes: &[u8]) -> Result<(), ContentError> {
        if self.exists(&expected) {
            return Ok(());
        }
        let mut w = self.ingest(expected, Some(bytes.len() as u64))?;
        w.write_all(bytes)
            .map_err(|e| ContentError::io(&w.tmp, e))?;
        w.commit()
    }

    /// Moves a file (on the same filesystem, e.g. staged in `ingest/`)
    /// into the store after hashing it; `expected` must match if given.
    pub fn adopt(&self, file: &Path, expected: Option<Digest>) -> Result<Digest, ContentError> {
        let mut f = File::open(file).map_err(|e| ContentError::io(file, e))?;
        let mut hasher = Sha256::new();
        io::copy(&mut f, &mut HashWriter(&mut hasher)).map_err(|e| ContentError::io(file, e))?;
        let actual = Digest::from_hasher(hasher);
        if let Some(want) = expected
            && want != actual
        {
            return Err(ContentError::DigestMismatch {
                expected: want,
                actual,
            });
        }
        f.sync_all().map_err(|e| ContentError::io(file, e))?;
        let dest = self.path(&actual);
        fs::rename(file, &dest).map_err(|e| ContentError::io(&dest, e))?;
        Ok(actual)
    }

    /// A fresh directory inside `ingest/` (same filesystem as the blobs).
    pub fn staging_dir(&self, tag: &str) -> Result<PathBuf, ContentError> {
        let n = INGEST_SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = self
            .ingest
            .join(format!("{tag}-{}-{n}", std::process::id()));
        fs::create_dir(&dir).map_err(|e| ContentError::io(&dir, e))?;
        Ok(dir)
    }

    pub fn read(&self, d: &Digest) -> Result<Vec<u8>, ContentError> {
        let p = self.path(d);
        fs::read(&p).map_err(|e| ContentError::io(&p, e))
    }

    pub fn delete(&self, d: &Digest) -> Result<(), ContentError> {
        let p = self.path(d);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ContentError::io(&p, e)),
            _ => Ok(()),
        }
    }

    /// Every stored blob.
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        let entries = fs::read_dir(&self.blobs).map_err(|e| ContentError::io(&self.blobs, e))?;
        Ok(entries
            .flatten()
            .filter_map(|e| Digest::parse_loose(&e.file_name().to_string_lossy()).ok())
            .collect())
    }

    /// Bytes used by stored blobs.
    pub fn usage(&self) -> (u64, u64) {
        let mut bytes = 0;
        let mut inodes = 0;
        if let Ok(entries) = fs::read_dir(&self.blobs) {
            for e in entries.flatten() {
                if let Ok(m) = e.metadata() {
                    bytes += m.len();
                    inodes += 1;
                }
            }
        }
        (bytes, inodes)
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A blob being written; see [`ContentStore::ingest`]. Dropped without
/// [`commit`](Ingest::commit), it leaves nothing behind.
#[derive(Debug)]
pub struct Ingest {
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
    hasher: Sha256,
    written: u64,
    expected: Digest,
    expected_size: Option<u64>,
    committed: bool,
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Ingest {
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verifies digest and size, syncs, and moves the blob into the store.
    pub fn commit(mut self) -> Result<(), ContentError> {
        let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if let Some(expected) = self.expected_size
            && expected != self.written
        {
            return Err(ContentError::SizeMismatch {
                digest: self.expected,
                expected,
                actual: self.written,
            });
        }
        if actual != self.expected {
            return Err(ContentError::DigestMismatch {
                expected: self.expected,
                actual,
            });
        }
        self.file
            .sync_all()
            .map_err(|e| ContentError::io(&self.tmp, e))?;
        fs::rename(&self.tmp, &self.dest).map_err(|e| ContentError::io(&self.dest, e))?;
        self.committed = true;
        if let Some(dir) = self.dest.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_blob_lands_and_wrong_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let good = Digest::of(b"hello");
        cs.put(good, b"hello").unwrap();
        assert_eq!(cs.read(&good).unwrap(), b"hello");
        assert_eq!(cs.list().unwrap(), vec![good]);

        let claimed = Digest::of(b"other");
        let err = cs.put(claimed, b"hello").unwrap_err();
        assert!(matches!(err, ContentError::DigestMismatch { .. }), "{err}");
        assert!(!cs.exists(&claimed));
        let mut w = cs.ingest(Digest::of(b"abc"), Some(4)).unwrap();
        w.write_all(b"abc").unwrap();
        assert!(matches!(w.commit(), Err(ContentError::SizeMismatch { .. })));
        // Nothing left in ingest/.
        assert_eq!(
            fs::read_dir(dir.path().join("content/ingest"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn open_clears_partial_ingests() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let w = cs.ingest(Digest::of(b"x"), None).unwrap();
        std::mem::forget(w); // as if the process died mid-write
        assert_eq!(
            fs::read_dir(dir.path().join("content/ingest"))
                .unwrap()
                .count(),
            1
        );
        ContentStore::open(dir.path()).unwrap();
        assert_eq!(
            fs::read_dir(dir.path().join("content/ingest"))
                .unwrap()
                .count(),
            0
        );
    }
}
