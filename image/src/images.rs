//! The image store: what berthd's ImageService works on.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_store::Store;
use tokio::sync::RwLock;

use crate::config::Config;
use crate::content::ContentStore;
use crate::digest::Digest;
use crate::error::{ImageError, io_error};
use crate::locks::KeyedLocks;
use crate::meta::{IMAGES, ImageRecord, LEASES, REFS, SNAPSHOTS};
use crate::reference::ImageRef;
use crate::snapshot::Snapshots;

/// Images, their content and their snapshots under one root dir.
#[derive(Debug)]
pub struct Images {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) content: Arc<ContentStore>,
    pub(crate) snapshots: Arc<Snapshots>,
    pub(crate) locks: KeyedLocks,
    /// Pulls and imports hold it shared; garbage collection exclusive, so
    /// a snapshot being pulled is never collected before it is recorded.
    pub(crate) gc_lock: RwLock<()>,
    pub(crate) clients: crate::remote::Clients,
    pub(crate) counters: PullCounters,
    /// What [`usage`](Self::usage) answers: measured at open and again
    /// after each change of the image store (an image recorded, a
    /// collection), never per call.
    usage: std::sync::Mutex<FsUsage>,
    mountpoint: berth_mountinfo::MountPointCache,
}

/// What pulls moved since berthd started, kept as plain atomics for the
/// metrics exporter to read at each scrape.
#[derive(Debug, Default)]
pub struct PullCounters {
    /// Layer bytes received from registries.
    pub bytes: std::sync::atomic::AtomicU64,
    /// Layers a pull found already stored.
    pub layers_reused: std::sync::atomic::AtomicU64,
    /// Layers a pull downloaded (or unpacked from a stored blob).
    pub layers_fetched: std::sync::atomic::AtomicU64,
}

/// Bytes and inodes the image filesystem uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    pub bytes: u64,
    pub inodes: u64,
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// What a lookup string names.
enum Lookup {
    Id(Digest),
    Ref(String),
    Prefix(String),
}

fn classify(s: &str) -> Result<Vec<Lookup>, ImageError> {
    // Docker's rule: 64 hex characters are an id, never a name.
    if let Ok(d) = Digest::parse_loose(s) {
        return Ok(vec![Lookup::Id(d)]);
    }
    let mut out = Vec::new();
    match ImageRef::parse(s) {
        Ok(r) => out.push(Lookup::Ref(r.to_string())),
        Err(e) if !s.bytes().all(|b| b.is_ascii_hexdigit()) => return Err(e.into()),
        Err(_) => {}
    }
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    if hex.len() >= 4
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        out.push(Lookup::Prefix(hex.to_owned()));
    }
    Ok(out)
}

impl Images {
    /// Bytes and layers pulls have moved since berthd started.
    pub fn counters(&self) -> &PullCounters {
        &self.counters
    }

    /// Opens the image store under `root` (content/, snapshots/).
    pub fn open(root: &Path, config: Config, store: Store) -> Result<Images, ImageError> {
        let content = ContentStore::open(root)?;
        let snapshots = Snapshots::open(root).map_err(|e| io_error("snapshots", &e))?;
        crate::remote::install_crypto_provider();
        log_registries(&config.registry_config_dir);
        let mountpoint = berth_mountinfo::MountPointCache::new(snapshots.root());
        let images = Images {
            config,
            store,
            content: Arc::new(content),
            snapshots: Arc::new(snapshots),
            locks: KeyedLocks::default(),
            gc_lock: RwLock::new(()),
            clients: Default::default(),
            counters: Default::default(),
            usage: std::sync::Mutex::new(FsUsage {
                bytes: 0,
                inodes: 0,
            }),
            mountpoint,
        };
        images.refresh_usage()?;
        Ok(images)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every registry directory of `registry_config_dir` as pulls would
    /// use it now: its file and hosts in order, or the file's error.
    pub fn registries(&self) -> Vec<crate::hosts::RegistryConfig> {
        crate::hosts::survey(&self.config.registry_config_dir)
    }

    /// Whether the config pins one of the image's references.
    pub fn is_pinned(&self, rec: &ImageRecord) -> bool {
        self.config.pinned_images.iter().any(|p| {
            ImageRef::parse(p).is_ok_and(|r| {
                let s = r.to_string();
                rec.repo_tags.contains(&s) || rec.repo_digests.contains(&s)
            })
        })
    }

    /// Finds an image by reference (`busybox`, `name:tag`, `name@digest`),
    /// id (`sha256:…` or 64 hex) or a unique id prefix.
    pub fn resolve(&self, s: &str) -> Result<Option<ImageRecord>, ImageError> {
        for lookup in classify(s)? {
            let found = match lookup {
                Lookup::Id(d) => self.store.get(&IMAGES, &d.to_string())?,
                Lookup::Ref(r) => match self.store.get(&REFS, &r)? {
                    Some(id) => self.store.get(&IMAGES, &id.to_string())?,
                    None => None,
                },
                Lookup::Prefix(p) => {
                    let matches: Vec<ImageRecord> = self
                        .store
                        .list(&IMAGES)?
                        .into_iter()
                        .map(|(_, r)| r)
                        .filter(|r| r.id.hex().starts_with(&p))
                        .collect();
                    if matches.len() > 1 {
                        return Err(ImageError::NotFound(format!(
                            "image id prefix {p} is ambiguous ({} images)",
                            matches.len()
                        )));
                    }
                    matches.into_iter().next()
                }
            };
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        Ok(self
            .store
            .list(&IMAGES)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// The image config blob (JSON).
    pub fn config_blob(&self, id: &Digest) -> Result<Vec<u8>, ImageError> {
        Ok(self.content.read(id)?)
    }

    /// Overlay lower dirs of an image, topmost layer first.
    pub fn lower_dirs(&self, image: &ImageRecord) -> Vec<PathBuf> {
        image
            .layers
            .iter()
            .rev()
            .map(|l| self.snapshots.fs(&l.chain_id))
            .collect()
    }

    /// Records `rec` under `refs` in one transaction; a tag that named
    /// another image moves to this one.
    pub(crate) fn record(
        &self,
        mut rec: ImageRecord,
        refs: &[String],
    ) -> Result<ImageRecord, ImageError> {
        let id = rec.id.to_string();
        self.store.write(|tx| {
            if let Some(old) = tx.get(&IMAGES, &id)? {
                for r in old.repo_tags {
                    if !rec.repo_tags.contains(&r) {
                        rec.repo_tags.push(r);
                    }
                }
                for r in old.repo_digests {
                    if !rec.repo_digests.contains(&r) {
                        rec.repo_digests.push(r);
                    }
                }
            }
            for r in refs {
                if let Some(prev) = tx.get(&REFS, r)?
                    && prev != rec.id
                    && let Some(mut other) = tx.get(&IMAGES, &prev.to_string())?
                {
                    other.repo_tags.retain(|t| t != r);
                    other.repo_digests.retain(|t| t != r);
                    tx.put(&IMAGES, &prev.to_string(), &other)?;
                }
                tx.put(&REFS, r, &rec.id)?;
            }
            rec.repo_tags.sort();
            rec.repo_digests.sort();
            tx.put(&IMAGES, &id, &rec)?;
            Ok::<(), ImageError>(())
        })?;
        self.refresh_usage()?;
        Ok(rec)
    }

    /// RemoveImage: by id removes the image; by tag removes that tag (and
    /// the image when it was the last one); by digest removes that
    /// reference (and the image when nothing names it any more). Unknown
    /// images are not an error. Unreferenced content is collected after.
    pub async fn remove(&self, s: &str) -> Result<bool, ImageError> {
        let Some(rec) = self.resolve(s)? else {
            return Ok(false);
        };
        let by_ref = match classify(s)?.into_iter().next() {
            Some(Lookup::Ref(r)) if self.store.get(&REFS, &r)?.is_some() => Some(r),
            _ => None,
        };
        let id = rec.id.to_string();
        self.store.write(|tx| {
            let Some(mut cur) = tx.get(&IMAGES, &id)? else {
                return Ok::<(), ImageError>(());
            };
            let delete_all = match &by_ref {
                None => true,
                Some(r) => {
                    tx.delete(&REFS, r)?;
                    cur.repo_tags.retain(|t| t != r);
                    cur.repo_digests.retain(|t| t != r);
                    let was_tag = !r.contains('@');
                    (was_tag && cur.repo_tags.is_empty())
                        || (cur.repo_tags.is_empty() && cur.repo_digests.is_empty())
                }
            };
            if delete_all {
                for r in cur.repo_tags.iter().chain(&cur.repo_digests) {
                    tx.delete(&REFS, r)?;
                }
                tx.delete(&IMAGES, &id)?;
            } else {
                tx.put(&IMAGES, &id, &cur)?;
            }
            Ok(())
        })?;
        self.gc().await?;
        Ok(true)
    }

    /// Leases the snapshots of image `id` to `holder` (a container), so
    /// they outlive the image. Fails with NotFound when the image is gone.
    pub async fn lease(&self, holder: &str, id: &Digest) -> Result<ImageRecord, ImageError> {
        let mut recs = self.lease_all(holder, std::slice::from_ref(id)).await?;
        recs.pop()
            .ok_or_else(|| ImageError::NotFound(id.to_string()))
    }

    /// Leases the snapshots of every image of `ids` to `holder` (a
    /// container: its own image and its image volumes'), replacing what it
    /// held; returns their records in `ids`' order. Fails with NotFound,
    /// leasing nothing, when one of them is gone. RemoveImage of a leased
    /// image then removes its names and record, and its snapshots stay
    /// until the lease ends (containerd keeps leased content the same way).
    pub async fn lease_all(
        &self,
        holder: &str,
        ids: &[Digest],
    ) -> Result<Vec<ImageRecord>, ImageError> {
        let _shared = self.gc_lock.read().await;
        let mut recs = Vec::with_capacity(ids.len());
        let mut chains: Vec<Digest> = Vec::new();
        for id in ids {
            let rec = self
                .store
                .get(&IMAGES, &id.to_string())?
                .ok_or_else(|| ImageError::NotFound(id.to_string()))?;
            for l in &rec.layers {
                if !chains.contains(&l.chain_id) {
                    chains.push(l.chain_id);
                }
            }
            recs.push(rec);
        }
        // Not synced on its own: the container's record, written durably
        // right after, takes it to disk; a crash before that loses only a
        // lease of a container that never existed.
        self.store
            .write_unsynced(|tx| tx.put(&LEASES, holder, &chains))?;
        Ok(recs)
    }

    /// Ends `holder`'s lease; its snapshots go with the next collection if
    /// nothing else uses them. Unknown holders are fine. Returns whether a
    /// collection would free something: only when a leased snapshot
    /// belongs to no image any more (its image was removed while the
    /// container ran), so removing containers of present images never
    /// pays for a collection.
    pub fn release(&self, holder: &str) -> Result<bool, ImageError> {
        let chains = self.store.write(|tx| {
            let chains = tx.get(&LEASES, holder)?.unwrap_or_default();
            tx.delete(&LEASES, holder)?;
            Ok::<_, ImageError>(chains)
        })?;
        if chains.is_empty() {
            return Ok(false);
        }
        let in_images: HashSet<Digest> = self
            .list()?
            .iter()
            .flat_map(|i| i.layers.iter().map(|l| l.chain_id))
            .collect();
        Ok(chains.iter().any(|c| !in_images.contains(c)))
    }

    /// The current lease holders.
    pub fn lease_holders(&self) -> Result<Vec<String>, ImageError> {
        Ok(self
            .store
            .list(&LEASES)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// Deletes snapshots and blobs no image uses and no container leases.
    pub async fn gc(&self) -> Result<(), ImageError> {
        let _exclusive = self.gc_lock.write().await;
        let images = self.list()?;
        let mut chains = HashSet::new();
        for (_, leased) in self.store.list(&LEASES)? {
            chains.extend(leased);
        }
        let mut blobs = HashSet::new();
        for i in &images {
            blobs.insert(i.id);
            blobs.insert(i.manifest);
            if let Some(ix) = i.index {
                blobs.insert(ix);
            }
            for l in &i.layers {
                chains.insert(l.chain_id);
                blobs.insert(l.digest);
            }
        }
        for chain in self.snapshots.list() {
            if !chains.contains(&chain) {
                tracing::debug!(chain = %chain, "removing unused snapshot");
                self.snapshots
                    .remove(&chain)
                    .map_err(|e| io_error("removing snapshot", &e))?;
            }
        }
        let stale: Vec<String> = self
            .store
            .list(&SNAPSHOTS)?
            .into_iter()
            .filter(|(_, s)| !chains.contains(&s.chain_id))
            .map(|(k, _)| k)
            .collect();
        if !stale.is_empty() {
            self.store.write(|tx| {
                for k in &stale {
                    tx.delete(&SNAPSHOTS, k)?;
                }
                Ok::<(), ImageError>(())
            })?;
        }
        for blob in self.content.list()? {
            if !blobs.contains(&blob) {
                self.content.delete(&blob)?;
            }
        }
        self.refresh_usage()
    }

    /// Bytes and inodes of image content (blobs and unpacked snapshots),
    /// as last measured: a copy, whatever the number of images.
    pub fn usage(&self) -> FsUsage {
        *self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Measures [`usage`](Self::usage) again: the blob directory's entries
    /// and the snapshots' recorded sizes (each counted once, when it was
    /// unpacked). Called after every change of the store's images and at
    /// open. Under the lock, so the last measurement stored is the last
    /// one made, after every change committed before it.
    pub(crate) fn refresh_usage(&self) -> Result<(), ImageError> {
        let mut cached = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let (blob_bytes, blob_files) = self.content.usage();
        let mut u = FsUsage {
            bytes: blob_bytes,
            inodes: blob_files,
        };
        for (_, s) in self.store.list(&SNAPSHOTS)? {
            u.bytes += s.bytes;
            u.inodes += s.inodes;
        }
        *cached = u;
        Ok(())
    }

    /// The mount point of the filesystem holding the image store (the
    /// mount table read again only when the store's device changes).
    pub fn mountpoint(&self) -> PathBuf {
        self.mountpoint.get()
    }

    /// Image config labels etc. are read from the config blob on demand.
    pub fn image_config(&self, id: &Digest) -> Result<crate::manifest::ImageConfig, ImageError> {
        let bytes = self.config_blob(id)?;
        crate::manifest::ImageConfig::parse(&bytes).map_err(ImageError::Storage)
    }

    /// Counts by table, for `Status` verbose output.
    pub fn summary(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        m.insert("images", self.list().map(|l| l.len()).unwrap_or(0));
        m.insert("snapshots", self.snapshots.list().len());
        m
    }
}

/// Says once, at start, which file and hosts serve each configured
/// registry; a broken file is a warning (only its registry's pulls fail).
fn log_registries(dir: &Path) {
    for r in crate::hosts::survey(dir) {
        match &r.error {
            None => {
                let hosts: Vec<String> = r
                    .hosts
                    .iter()
                    .map(|h| format!("{} [{}]", h.url, h.capabilities.join(",")))
                    .collect();
                tracing::info!(registry = %r.registry, file = %r.file, hosts = %hosts.join(", "), "registry hosts");
            }
            Some(e) => {
                tracing::warn!(registry = %r.registry, file = %r.file, error = %e, "registry config is broken; pulls from this registry fail until it is fixed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{LayerRecord, SnapshotRecord};

    /// An image store in a temp dir with one recorded image of one layer
    /// (its snapshot on disk, `bytes` of it recorded).
    fn store_with_image(dir: &Path, bytes: u64) -> (Images, ImageRecord) {
        let store = Store::open(&dir.join("meta.redb")).unwrap();
        let images = Images::open(dir, Config::default(), store).unwrap();
        let chain = Digest::of(b"layer");
        let p = images.snapshots.prepare(&chain).unwrap();
        std::fs::write(p.fs().join("f"), "x").unwrap();
        images.snapshots.commit(p, &chain).unwrap();
        let snap = SnapshotRecord {
            chain_id: chain,
            parent: None,
            diff_id: chain,
            bytes,
            inodes: 2,
        };
        images
            .store
            .put(&SNAPSHOTS, &chain.to_string(), &snap)
            .unwrap();
        let rec = ImageRecord {
            id: Digest::of(b"config"),
            repo_tags: vec![],
            repo_digests: vec![],
            manifest: Digest::of(b"manifest"),
            index: None,
            layers: vec![LayerRecord {
                digest: Digest::of(b"blob"),
                media_type: String::new(),
                size: 1,
                diff_id: chain,
                chain_id: chain,
            }],
            size: 1,
            user: String::new(),
            platform: String::new(),
            stored_at: 0,
        };
        let rec = images
            .record(rec, &["example.com/vol:v1".to_owned()])
            .unwrap();
        (images, rec)
    }

    #[tokio::test]
    async fn a_leased_image_loses_its_name_and_keeps_its_layers() {
        let d = tempfile::tempdir().unwrap();
        let (images, rec) = store_with_image(d.path(), 10);
        let chain = rec.layers[0].chain_id;
        // A container's own image and its image volume's: one lease.
        let other = Digest::of(b"gone");
        let e = images
            .lease_all("container:c", &[rec.id, other])
            .await
            .unwrap_err();
        assert!(matches!(e, ImageError::NotFound(_)), "{e}");
        assert!(images.lease_holders().unwrap().is_empty(), "nothing leased");
        let leased = images
            .lease_all("container:c", &[rec.id, rec.id])
            .await
            .unwrap();
        assert_eq!(leased.len(), 2);
        // One image (a container without image volumes): replaced.
        assert_eq!(images.lease("container:c", &rec.id).await.unwrap(), rec);
        assert!(images.remove("example.com/vol:v1").await.unwrap());
        assert!(images.resolve(&rec.id.to_string()).unwrap().is_none());
        assert!(images.snapshots.exists(&chain), "leased: kept");
        // The lease's end says a collection frees something; it does.
        assert!(images.release("container:c").unwrap());
        images.gc().await.unwrap();
        assert!(!images.snapshots.exists(&chain));
    }

    #[tokio::test]
    async fn usage_is_kept_as_images_change_not_measured_per_call() {
        let d = tempfile::tempdir().unwrap();
        let (images, _) = store_with_image(d.path(), 1000);
        assert_eq!(
            images.usage(),
            FsUsage {
                bytes: 1000,
                inodes: 2
            }
        );
        // A change behind the store's back is not seen by a call...
        images
            .store
            .write(|tx| {
                tx.delete(&SNAPSHOTS, &Digest::of(b"layer").to_string())?;
                Ok::<(), ImageError>(())
            })
            .unwrap();
        assert_eq!(images.usage().bytes, 1000);
        // ...but with the next collection.
        images.gc().await.unwrap();
        assert_eq!(
            images.usage(),
            FsUsage {
                bytes: 0,
                inodes: 0
            }
        );
    }
}
