//! PullImage: resolve through mirrors and the registry, choose the node's
//! platform, fetch the config, then every layer in parallel, each streamed
//! through the layer pipeline.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::digest::{Digest, chain_ids};

use crate::credhelper;
use crate::creds::{AuthFields, Credentials};
use crate::error::ImageError;
use crate::hosts;
use crate::images::{Images, now};
use crate::layer::{ChannelReader, LayerJob, apply};
use crate::manifest::{self, ImageConfig, Manifest, host_platform, layer_compression};
use crate::meta::{ImageRecord, LayerRecord, SNAPSHOTS};
use crate::progress::{self, Progress, PullEvent};
use crate::reference::ImageRef;
use crate::remote::Remote;

/// Chunks buffered between the network and the unpacker per layer.
const CHANNEL_DEPTH: usize = 32;

impl Images {
    /// Pulls `reference` and records it. `auth` is kubelet's pull secret.
    pub async fn pull(
        &self,
        reference: &str,
        auth: Option<&AuthFields>,
    ) -> Result<ImageRecord, ImageError> {
        self.pull_with_progress(reference, auth, None).await
    }

    /// [`pull`](Self::pull), reporting progress to `progress`.
    pub async fn pull_with_progress(
        &self,
        reference: &str,
        auth: Option<&AuthFields>,
        progress: Option<&Progress>,
    ) -> Result<ImageRecord, ImageError> {
        let r = ImageRef::parse(reference)?;
        // The registry's file first: a broken one fails before a
        // credential helper runs.
        let endpoints = hosts::endpoints(&self.config.registry_config_dir, &r.registry)?;
        let creds = match auth.map(|a| a.credentials()).transpose() {
            Ok(Some(Some(c))) => Some(c),
            Ok(_) => {
                credhelper::file_credentials(
                    &self.config.auth_file,
                    &r.registry,
                    credhelper::TIMEOUT,
                )
                .await?
            }
            Err(m) => {
                return Err(ImageError::Unauthenticated {
                    registry: r.registry.clone(),
                    message: format!("credentials in the request: {m}"),
                });
            }
        };
        let _shared = self.gc_lock.read().await;
        let top = match r.digest {
            Some(d) => d,
            None => self.resolve_tag(&r, &endpoints, creds.as_ref()).await?,
        };
        let mut last: Option<ImageError> = None;
        for ep in endpoints.into_iter().filter(|e| e.pull) {
            let remote = Remote::new(&self.clients, ep, &r, creds.as_ref())?;
            match self.pull_from(&remote, &r, top, progress).await {
                Ok(rec) => return Ok(rec),
                // A host that cannot serve the image: try the next one.
                Err(e) if retryable(&e) => {
                    tracing::info!(image = %r, endpoint = %remote.endpoint.base_url(), error = %e, "host failed; trying the next one");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ImageError::NotFound(format!("no host may pull {r}"))))
    }

    /// The digest `r`'s tag names, from the first host that may resolve
    /// (a host with only `pull` is never trusted with a tag).
    async fn resolve_tag(
        &self,
        r: &ImageRef,
        endpoints: &[hosts::Endpoint],
        creds: Option<&Credentials>,
    ) -> Result<Digest, ImageError> {
        let mut last: Option<ImageError> = None;
        for ep in endpoints.iter().filter(|e| e.resolve) {
            let remote = Remote::new(&self.clients, ep.clone(), r, creds)?;
            match remote.resolve().await {
                Ok(d) => {
                    tracing::debug!(image = %r, endpoint = %ep.base_url(), digest = %d, "tag resolved");
                    return Ok(d);
                }
                Err(e) if retryable(&e) => {
                    tracing::info!(image = %r, endpoint = %ep.base_url(), error = %e, "cannot resolve the tag on this host; trying the next one");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            ImageError::NotFound(format!(
                "{r}: no host may resolve its tag (capability resolve)"
            ))
        }))
    }

    async fn pull_from(
        &self,
        remote: &Remote,
        r: &ImageRef,
        top: Digest,
        progress: Option<&Progress>,
    ) -> Result<ImageRecord, ImageError> {
        let (top, top_digest) = remote.manifest(Some(&top)).await?;
        let parsed = Manifest::parse(&top, None).map_err(ImageError::Unsupported)?;
        let (manifest_bytes, manifest_digest, index) = match parsed {
            Manifest::Index { manifests } => {
                let host = host_platform();
                let chosen = manifest::choose(&host, &manifests).ok_or_else(|| {
                    let offered: Vec<String> = manifests
                        .iter()
                        .filter_map(|m| m.platform.as_ref().map(|p| p.to_string()))
                        .collect();
                    ImageError::NotFound(format!(
                        "{r}: no image for {host} in its index (offered: {})",
                        offered.join(", ")
                    ))
                })?;
                let (bytes, digest) = remote.manifest(Some(&chosen.digest)).await?;
                (bytes, digest, Some((top_digest, top)))
            }
            Manifest::Image { .. } => (top, top_digest, None),
        };
        let Manifest::Image { config, layers } =
            Manifest::parse(&manifest_bytes, None).map_err(ImageError::Unsupported)?
        else {
            return Err(ImageError::Unsupported(format!(
                "{r}: an index inside an index"
            )));
        };

        let config_bytes = if self.content.exists(&config.digest) {
            Bytes::from(self.content.read(&config.digest)?)
        } else {
            remote.blob(&config).await?
        };
        if Digest::of(&config_bytes) != config.digest {
            return Err(ImageError::DigestMismatch {
                what: "image config",
                digest: config.digest,
                detail: format!("got {}", Digest::of(&config_bytes)),
            });
        }
        let cfg = ImageConfig::parse(&config_bytes)
            .map_err(|e| ImageError::Unsupported(format!("{r}: {e}")))?;
        let records = layer_records(&r.to_string(), &layers, &cfg)?;
        progress::send(
            progress,
            PullEvent::Resolved {
                reference: r.to_string(),
                layers: records.iter().map(|l| (l.digest, l.size)).collect(),
            },
        );

        // Every layer task runs to its end, also after another failed (it
        // stops early then): a pull returns only when nothing of it is
        // still writing, so a failed pull leaves nothing behind.
        let abort = AtomicBool::new(false);
        // The error that caused the abort, not those it caused.
        let first_error = std::sync::Mutex::new(None);
        // Collected first: a lazy iterator of futures borrowing `records`
        // trips the compiler's Send inference for the whole pull.
        let jobs: Vec<_> = records
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let parent = i.checked_sub(1).map(|p| records[p].chain_id);
                let (abort, first_error) = (&abort, &first_error);
                async move {
                    if let Err(e) = self.ensure_layer(remote, l, parent, progress, abort).await
                        && !abort.swap(true, Ordering::Relaxed)
                    {
                        *first_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    }
                }
            })
            .collect();
        futures_util::stream::iter(jobs)
            .buffer_unordered(self.config.max_concurrent_downloads)
            .collect::<Vec<()>>()
            .await;
        if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }

        self.content.put(config.digest, &config_bytes)?;
        self.content.put(manifest_digest, &manifest_bytes)?;
        if let Some((d, bytes)) = &index {
            self.content.put(*d, bytes)?;
        }
        let repo_digest = r.with_digest(index.as_ref().map_or(manifest_digest, |(d, _)| *d));
        let mut refs = vec![repo_digest.to_string()];
        if r.tag.is_some() {
            refs.push(r.to_string());
        }
        let rec = new_record(
            &cfg,
            config.digest,
            config.size,
            manifest_digest,
            index.map(|(d, _)| d),
            records,
        );
        let rec = ImageRecord {
            repo_tags: r
                .tag
                .as_ref()
                .map(|_| vec![r.to_string()])
                .unwrap_or_default(),
            repo_digests: vec![repo_digest.to_string()],
            ..rec
        };
        let rec = self.record(rec, &refs)?;
        tracing::info!(image = %r, id = %rec.id, layers = rec.layers.len(), "image pulled");
        Ok(rec)
    }

    /// Makes sure one layer's blob and snapshot exist: at most one task
    /// works on a chain ID at a time; the others find it done.
    async fn ensure_layer(
        &self,
        remote: &Remote,
        l: &LayerRecord,
        parent: Option<Digest>,
        progress: Option<&Progress>,
        abort: &AtomicBool,
    ) -> Result<(), ImageError> {
        let _g = self.locks.lock(l.chain_id).await;
        if abort.load(Ordering::Relaxed) {
            // Another layer failed; its error is the pull's.
            return Ok(());
        }
        let have_blob = self.content.exists(&l.digest);
        if have_blob && self.snapshots.exists(&l.chain_id) {
            self.counters.layers_reused.fetch_add(1, Ordering::Relaxed);
            progress::send(
                progress,
                PullEvent::Done {
                    digest: l.digest,
                    cached: true,
                },
            );
            return Ok(());
        }
        let compression = layer_compression(&l.media_type)
            .ok_or_else(|| ImageError::Unsupported(format!("layer media type {}", l.media_type)))?;
        let job = LayerJob {
            content: self.content.clone(),
            snapshots: self.snapshots.clone(),
            layer: l.clone(),
            parent,
            compression,
            write_blob: !have_blob,
        };
        let snap = if have_blob {
            self.unpack_local(job).await?
        } else {
            let stream = remote.blob_stream(&self.descriptor(l)).await?;
            let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
            let work = tokio::task::spawn_blocking(move || {
                let mut reader = ChannelReader::new(rx);
                let res = apply(&job, &mut reader);
                (res, reader.network_error)
            });
            let mut stream = std::pin::pin!(stream);
            let (mut received, mut reported) = (0u64, 0u64);
            while let Some(chunk) = stream.next().await {
                if abort.load(Ordering::Relaxed) {
                    break; // the unpacker sees a short stream and stops
                }
                let failed = chunk.is_err();
                if let Ok(b) = &chunk {
                    received += b.len() as u64;
                    self.counters
                        .bytes
                        .fetch_add(b.len() as u64, Ordering::Relaxed);
                    if received - reported >= progress::STEP || received == l.size {
                        reported = received;
                        progress::send(
                            progress,
                            PullEvent::Progress {
                                digest: l.digest,
                                bytes: received,
                            },
                        );
                    }
                }
                // A closed channel means the unpacker stopped (and says why).
                if tx.send(chunk).await.is_err() || failed {
                    break;
                }
            }
            drop(tx);
            let (res, net) = work
                .await
                .map_err(|e| ImageError::Storage(format!("unpack task: {e}")))?;
            match (res, net) {
                (Err(_), Some(net)) => {
                    return Err(ImageError::Unavailable {
                        registry: remote.endpoint.host.clone(),
                        message: format!("layer {}: {net}", l.digest),
                    });
                }
                (res, _) => res?,
            }
        };
        self.store.put(&SNAPSHOTS, &l.chain_id.to_string(), &snap)?;
        self.counters.layers_fetched.fetch_add(1, Ordering::Relaxed);
        progress::send(
            progress,
            PullEvent::Done {
                digest: l.digest,
                cached: have_blob,
            },
        );
        Ok(())
    }

    /// Unpacks a layer whose blob is already in the content store.
    pub(crate) async fn unpack_local(
        &self,
        job: LayerJob,
    ) -> Result<crate::meta::SnapshotRecord, ImageError> {
        let path = self.content.path(&job.layer.digest);
        tokio::task::spawn_blocking(move || {
            let mut f = std::fs::File::open(&path)
                .map_err(|e| crate::error::io_error("reading blob", &e))?;
            apply(&job, &mut f)
        })
        .await
        .map_err(|e| ImageError::Storage(format!("unpack task: {e}")))?
    }

    fn descriptor(&self, l: &LayerRecord) -> manifest::Descriptor {
        manifest::Descriptor {
            media_type: l.media_type.clone(),
            digest: l.digest,
            size: l.size,
            platform: None,
            annotations: Default::default(),
        }
    }
}

/// Layer records of an image: checks media types and that the config's
/// diff IDs match the manifest's layers, and computes chain IDs.
pub(crate) fn layer_records(
    name: &str,
    layers: &[manifest::Descriptor],
    cfg: &ImageConfig,
) -> Result<Vec<LayerRecord>, ImageError> {
    let diff_ids = &cfg.rootfs.diff_ids;
    if diff_ids.len() != layers.len() {
        return Err(ImageError::Unsupported(format!(
            "{name}: manifest has {} layers, config {} diff IDs",
            layers.len(),
            diff_ids.len()
        )));
    }
    if let Some(l) = layers
        .iter()
        .find(|l| layer_compression(&l.media_type).is_none())
    {
        return Err(ImageError::Unsupported(format!(
            "{name}: layer {} has unsupported media type {:?}",
            l.digest, l.media_type
        )));
    }
    let chains = chain_ids(diff_ids);
    Ok(layers
        .iter()
        .zip(diff_ids.iter().zip(&chains))
        .map(|(l, (diff, chain))| LayerRecord {
            digest: l.digest,
            media_type: l.media_type.clone(),
            size: l.size,
            diff_id: *diff,
            chain_id: *chain,
        })
        .collect())
}

/// An image record without references.
pub(crate) fn new_record(
    cfg: &ImageConfig,
    config_digest: Digest,
    config_size: u64,
    manifest: Digest,
    index: Option<Digest>,
    layers: Vec<LayerRecord>,
) -> ImageRecord {
    let mut platform = format!("{}/{}", cfg.os, cfg.architecture);
    if !cfg.variant.is_empty() {
        platform = format!("{platform}/{}", cfg.variant);
    }
    ImageRecord {
        id: config_digest,
        repo_tags: Vec::new(),
        repo_digests: Vec::new(),
        manifest,
        index,
        size: config_size + layers.iter().map(|l| l.size).sum::<u64>(),
        layers,
        user: cfg.user().to_owned(),
        platform,
        stored_at: now(),
    }
}

/// Errors after which another endpoint may do better.
fn retryable(e: &ImageError) -> bool {
    matches!(
        e,
        ImageError::NotFound(_)
            | ImageError::Unavailable { .. }
            | ImageError::Unauthenticated { .. }
            | ImageError::PermissionDenied { .. }
            | ImageError::DigestMismatch { .. }
    )
}
