//! Offline import: an OCI image layout archive (`oci-layout`, `index.json`,
//! `blobs/sha256/…`) or a `docker save` archive (`manifest.json`), plain or
//! gzip-compressed. This is how an air-gapped node gets images.
//!
//! Archive member names never become filesystem paths: every regular file
//! is staged as `ingest/<import>/<n>` and found by its (normalized) name in
//! a map, so a hostile archive cannot write anywhere by naming.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{ImageError, io_error};
use crate::images::Images;
use crate::layer::LayerJob;
use crate::manifest::{self, ImageConfig, Manifest, host_platform, layer_compression};
use crate::meta::{ImageRecord, SNAPSHOTS};
use crate::pull::{layer_records, new_record};
use crate::reference::ImageRef;

const NAME_ANNOTATION: &str = "io.containerd.image.name";
const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Staged archive members, by normalized member name.
struct Staged {
    dir: PathBuf,
    files: HashMap<String, PathBuf>,
    /// Members already moved into the content store, with their digests.
    adopted: std::sync::Mutex<HashMap<String, (Digest, u64, &'static str)>>,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Staged {
    fn get(&self, name: &str) -> Option<&PathBuf> {
        self.files.get(&normalize(name)?)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        let p = self
            .get(name)
            .ok_or_else(|| bad(format!("archive has no member {name:?}")))?;
        fs::read(p).map_err(|e| io_error("reading staged member", &e))
    }
}

fn bad(msg: String) -> ImageError {
    ImageError::Unsupported(format!("image archive: {msg}"))
}

/// `./a/b` → `a/b`; None for names with `..` or that are empty.
fn normalize(name: &str) -> Option<String> {
    let mut parts = Vec::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?.to_owned()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl Images {
    /// Imports every image of the archive at `path` for this node's
    /// platform. Returns the images recorded.
    pub async fn import(&self, path: &Path) -> Result<Vec<ImageRecord>, ImageError> {
        let staged = {
            let dir = self.content.staging_dir("import")?;
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || stage(&path, dir))
                .await
                .map_err(|e| ImageError::Storage(format!("import task: {e}")))??
        };
        let _shared = self.gc_lock.read().await;
        let mut out = Vec::new();
        if staged.get("index.json").is_some() {
            let index = staged.read("index.json")?;
            let Manifest::Index { manifests } = Manifest::parse(&index, Some(manifest::OCI_INDEX))
                .map_err(|e| bad(format!("index.json: {e}")))?
            else {
                return Err(bad("index.json is not an index".into()));
            };
            for d in &manifests {
                let name = d
                    .annotations
                    .get(NAME_ANNOTATION)
                    .or_else(|| d.annotations.get(REF_ANNOTATION))
                    .and_then(|n| ImageRef::parse(n).ok())
                    .filter(|r| r.tag.is_some() || r.digest.is_some());
                let rec = self.import_oci(&staged, d, name.as_ref()).await?;
                out.push(rec);
            }
        } else if staged.get("manifest.json").is_some() {
            let entries: Vec<DockerEntry> = serde_json::from_slice(&staged.read("manifest.json")?)
                .map_err(|e| bad(format!("manifest.json: {e}")))?;
            for e in entries {
                out.push(self.import_docker(&staged, e).await?);
            }
        } else {
            return Err(bad(
                "neither an OCI layout (index.json) nor a docker save archive (manifest.json)"
                    .into(),
            ));
        }
        Ok(out)
    }

    /// Moves a staged blob into the content store (verified) unless there.
    fn adopt_blob(&self, staged: &Staged, digest: &Digest) -> Result<(), ImageError> {
        if self.content.exists(digest) {
            return Ok(());
        }
        let name = format!("blobs/sha256/{}", digest.hex());
        let p = staged
            .get(&name)
            .ok_or_else(|| bad(format!("missing blob {digest}")))?;
        self.content.adopt(p, Some(*digest))?;
        Ok(())
    }

    async fn import_oci(
        &self,
        staged: &Staged,
        desc: &manifest::Descriptor,
        name: Option<&ImageRef>,
    ) -> Result<ImageRecord, ImageError> {
        self.adopt_blob(staged, &desc.digest)?;
        let top = self.content.read(&desc.digest)?;
        let (manifest_digest, index) = match Manifest::parse(&top, Some(&desc.media_type))
            .map_err(ImageError::Unsupported)?
        {
            Manifest::Index { manifests } => {
                let host = host_platform();
                let chosen = manifest::choose(&host, &manifests)
                    .ok_or_else(|| bad(format!("index {} has no image for {host}", desc.digest)))?;
                self.adopt_blob(staged, &chosen.digest)?;
                (chosen.digest, Some(desc.digest))
            }
            Manifest::Image { .. } => (desc.digest, None),
        };
        let Manifest::Image { config, layers } =
            Manifest::parse(&self.content.read(&manifest_digest)?, None)
                .map_err(ImageError::Unsupported)?
        else {
            return Err(bad(format!("{manifest_digest} is not an image manifest")));
        };
        self.adopt_blob(staged, &config.digest)?;
        for l in &layers {
            self.adopt_blob(staged, &l.digest)?;
        }
        let cfg = ImageConfig::parse(&self.content.read(&config.digest)?)
            .map_err(ImageError::Unsupported)?;
        let label = name
            .map(|n| n.to_string())
            .unwrap_or_else(|| desc.digest.to_string());
        let records = layer_records(&label, &layers, &cfg)?;
        self.unpack_all(&records).await?;
        let rec = new_record(
            &cfg,
            config.digest,
            config.size,
            manifest_digest,
            index,
            records,
        );
        let refs: Vec<String> = name.map(|n| vec![n.to_string()]).unwrap_or_default();
        let rec = ImageRecord {
            repo_tags: refs.iter().filter(|r| !r.contains('@')).cloned().collect(),
            repo_digests: refs.iter().filter(|r| r.contains('@')).cloned().collect(),
            ..rec
        };
        let rec = self.record(rec, &refs)?;
        tracing::info!(image = %label, id = %rec.id, "image imported");
        Ok(rec)
    }

    async fn import_docker(
        &self,
        staged: &Staged,
        e: DockerEntry,
    ) -> Result<ImageRecord, ImageError> {
        let config_path = staged
            .get(&e.config)
            .ok_or_else(|| bad(format!("manifest.json names missing config {:?}", e.config)))?
            .clone();
        let config_bytes = fs::read(&config_path).map_err(|x| io_error("config", &x))?;
        let config_digest = Digest::of(&config_bytes);
        let cfg = ImageConfig::parse(&config_bytes).map_err(ImageError::Unsupported)?;
        self.content.put(config_digest, &config_bytes)?;
        // docker save layers are tars (older Docker) or compressed blobs
        // (newer): tell by their first bytes.
        let mut descs = Vec::new();
        for l in &e.layers {
            let known = staged
                .adopted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(l)
                .copied();
            let (digest, size, media_type) = match known {
                Some(k) => k,
                None => {
                    let p = staged
                        .get(l)
                        .ok_or_else(|| bad(format!("manifest.json names missing layer {l:?}")))?;
                    let media_type = sniff_layer(p)?;
                    let size = fs::metadata(p).map_err(|x| io_error("layer", &x))?.len();
                    let digest = self.content.adopt(p, None)?;
                    let k = (digest, size, media_type);
                    staged
                        .adopted
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(l.clone(), k);
                    k
                }
            };
            descs.push(manifest::Descriptor {
                media_type: media_type.into(),
                digest,
                size,
                platform: None,
                annotations: Default::default(),
            });
        }
        let label = e
            .repo_tags
            .as_ref()
            .and_then(|t| t.first().cloned())
            .unwrap_or_else(|| config_digest.to_string());
        let records = layer_records(&label, &descs, &cfg)?;
        self.unpack_all(&records).await?;
        // A manifest for the image, as a registry would have served it.
        let manifest_json = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_bytes.len(),
            },
            "layers": descs,
        });
        let manifest_bytes =
            serde_json::to_vec(&manifest_json).map_err(|x| ImageError::Storage(x.to_string()))?;
        let manifest_digest = Digest::of(&manifest_bytes);
        self.content.put(manifest_digest, &manifest_bytes)?;
        let tags: Vec<String> = e
            .repo_tags
            .unwrap_or_default()
            .iter()
            .filter_map(|t| ImageRef::parse(t).ok())
            .map(|r| r.to_string())
            .collect();
        let rec = new_record(
            &cfg,
            config_digest,
            config_bytes.len() as u64,
            manifest_digest,
            None,
            records,
        );
        let rec = ImageRecord {
            repo_tags: tags.clone(),
            ..rec
        };
        let rec = self.record(rec, &tags)?;
        tracing::info!(image = %label, id = %rec.id, "image imported");
        Ok(rec)
    }

    /// Unpacks every layer whose snapshot is missing (blobs are local).
    async fn unpack_all(&self, records: &[crate::meta::LayerRecord]) -> Result<(), ImageError> {
        for (i, l) in records.iter().enumerate() {
            let _g = self.locks.lock(l.chain_id).await;
            if self.snapshots.exists(&l.chain_id) {
                continue;
            }
            let compression = layer_compression(&l.media_type)
                .ok_or_else(|| bad(format!("layer media type {}", l.media_type)))?;
            let job = LayerJob {
                content: self.content.clone(),
                snapshots: self.snapshots.clone(),
                layer: l.clone(),
                parent: i.checked_sub(1).map(|p| records[p].chain_id),
                compression,
                write_blob: false,
            };
            let snap = self.unpack_local(job).await?;
            self.store.put(&SNAPSHOTS, &l.chain_id.to_string(), &snap)?;
        }
        Ok(())
    }
}

fn sniff_layer(p: &Path) -> Result<&'static str, ImageError> {
    let mut head = [0u8; 4];
    let n = File::open(p)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| io_error("layer", &e))?;
    Ok(match &head[..n] {
        [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
        [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => "application/vnd.oci.image.layer.v1.tar",
    })
}

/// Copies every regular file of the (possibly gzipped) archive into `dir`.
fn stage(archive: &Path, dir: PathBuf) -> Result<Staged, ImageError> {
    let mut staged = Staged {
        dir,
        files: HashMap::new(),
        adopted: Default::default(),
    };
    let what = archive.display().to_string();
    let mut f = File::open(archive).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ImageError::NotFound(format!("no such file {what}")),
        _ => io_error(&what, &e),
    })?;
    let mut magic = [0u8; 2];
    let gz = f.read(&mut magic).map_err(|e| io_error(&what, &e))? == 2 && magic == [0x1f, 0x8b];
    drop(f);
    let f = BufReader::new(File::open(archive).map_err(|e| io_error(&what, &e))?);
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let mut ar = tar::Archive::new(reader);
    let entries = ar.entries().map_err(|e| bad(format!("{what}: {e}")))?;
    for (n, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| bad(format!("{what}: {e}")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .ok()
            .and_then(|p| p.to_str().and_then(normalize))
            .ok_or_else(|| bad(format!("{what}: member {n} has an unusable name")))?;
        let dest = staged.dir.join(n.to_string());
        let mut out = File::create(&dest).map_err(|e| io_error("staging", &e))?;
        io::copy(&mut entry, &mut out).map_err(|e| io_error("staging", &e))?;
        staged.files.insert(name, dest);
    }
    Ok(staged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_normalized_and_traversal_refused() {
        assert_eq!(
            normalize("./blobs/sha256/ab").as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(normalize("/index.json").as_deref(), Some("index.json"));
        assert_eq!(normalize("a/../../etc/passwd"), None);
        assert_eq!(normalize("."), None);
    }
}
