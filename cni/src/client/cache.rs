//! The result cache: what ADD did, kept so DEL can undo it later.
//!
//! One file per attachment, `<cache_dir>/<network>-<container id>-<ifname>`
//! (libcni's naming), holding the network config list as it was used, the
//! final result, `CNI_ARGS`, the capability arguments, ifname and netns.
//! Files are written atomically (temp file, fsync, rename, fsync of the
//! directory) with mode 0600: the config may hold credentials.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::CniError;

/// The `kind` of berth's cache files.
pub(crate) const KIND: &str = "berthCniCacheV1";

/// One cached attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Entry {
    pub kind: String,
    pub network_name: String,
    pub container_id: String,
    pub if_name: String,
    pub netns: String,
    /// `CNI_ARGS` as key/value pairs.
    #[serde(default)]
    pub cni_args: Vec<(String, String)>,
    /// The capability arguments the runtime supplied on ADD.
    #[serde(default)]
    pub capability_args: Map<String, Value>,
    /// The network config list the plugins were run with.
    pub config: Value,
    /// The final ADD result, in the list's cniVersion.
    pub result: Value,
}

/// What a cache file holds: an entry, or why it cannot be read.
pub(crate) type Found = (PathBuf, Result<Entry, String>);

pub(crate) fn file_name(network: &str, container_id: &str, ifname: &str) -> String {
    format!("{network}-{container_id}-{ifname}")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CniError + '_ {
    move |source| CniError::Cache {
        path: path.to_owned(),
        source,
    }
}

/// Writes `entry` atomically; returns the file's path.
pub(crate) fn write(dir: &Path, entry: &Entry) -> Result<PathBuf, CniError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    let name = file_name(&entry.network_name, &entry.container_id, &entry.if_name);
    let path = dir.join(&name);
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let bytes = serde_json::to_vec(entry).map_err(|e| CniError::BadCache {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io(&path)(e));
    }
    Ok(path)
}

fn read(path: &Path) -> Result<Option<Result<Entry, String>>, CniError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    Ok(Some(
        serde_json::from_slice::<Entry>(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|e| {
                if e.kind == KIND {
                    Ok(e)
                } else {
                    Err(format!("unknown kind {:?}", e.kind))
                }
            }),
    ))
}

/// Every cache file (dot files, i.e. temp files, are skipped).
pub(crate) fn list(dir: &Path) -> Result<Vec<Found>, CniError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    let mut found = Vec::new();
    for name in names {
        let path = dir.join(name);
        if let Some(entry) = read(&path)? {
            found.push((path, entry));
        }
    }
    Ok(found)
}

/// The cache files of one attachment, whatever network they were made for.
/// A file whose name matches but which cannot be parsed is returned too
/// (with its problem), so that it can be cleaned up.
pub(crate) fn find(dir: &Path, container_id: &str, ifname: &str) -> Result<Vec<Found>, CniError> {
    let suffix = format!("-{container_id}-{ifname}");
    Ok(list(dir)?
        .into_iter()
        .filter(|(path, entry)| match entry {
            Ok(e) => e.container_id == container_id && e.if_name == ifname,
            Err(_) => path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() > suffix.len() && n.ends_with(&suffix)),
        })
        .collect())
}

/// Removes a cache file (already gone is fine).
pub(crate) fn remove(path: &Path) -> Result<(), CniError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path)(e)),
    }
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn entry(net: &str, cid: &str) -> Entry {
        Entry {
            kind: KIND.into(),
            network_name: net.into(),
            container_id: cid.into(),
            if_name: "eth0".into(),
            netns: "/run/netns/x".into(),
            cni_args: vec![("IgnoreUnknown".into(), "1".into())],
            capability_args: Map::new(),
            config: serde_json::json!({"name": net}),
            result: serde_json::json!({"cniVersion": "1.0.0"}),
        }
    }

    #[test]
    fn write_find_remove() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("results");
        let p = write(&cache, &entry("net", "abc")).unwrap();
        assert_eq!(p, cache.join("net-abc-eth0"));
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write(&cache, &entry("a-b", "c")).unwrap();
        // Overwrite is atomic and leaves no temp file behind.
        write(&cache, &entry("net", "abc")).unwrap();
        assert_eq!(fs::read_dir(&cache).unwrap().count(), 2);
        let found = find(&cache, "abc", "eth0").unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1.as_ref().unwrap(), &entry("net", "abc"));
        // "a-b"/"c" and "a"/"b-c" share a file name suffix: content decides.
        assert!(find(&cache, "b-c", "eth0").unwrap().is_empty());
        assert_eq!(find(&cache, "c", "eth0").unwrap().len(), 1);
        fs::write(cache.join("old-zzz-eth0"), "{").unwrap();
        let found = find(&cache, "zzz", "eth0").unwrap();
        assert!(found[0].1.is_err());
        remove(&p).unwrap();
        remove(&p).unwrap();
        assert!(find(&cache, "abc", "eth0").unwrap().is_empty());
        assert!(list(&dir.path().join("missing")).unwrap().is_empty());
    }
}
