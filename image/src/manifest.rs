//! Manifests, indexes and image configs as registries serve them (Docker
//! schema 2 and OCI), parsed leniently, and the node's platform choice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// Media types asked for when resolving a reference.
pub const ACCEPT: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The compression of a layer media type, or None if it is not a layer
/// berth can unpack.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        | "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Compression::Zstd),
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// A manifest or an index, told apart by media type (or shape).
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    Index {
        manifests: Vec<Descriptor>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
}

impl Manifest {
    /// Parses a manifest body; `content_type` is the registry's header.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, String> {
        let raw: RawManifest = serde_json::from_slice(bytes)
            .map_err(|e| format!("manifest is not valid JSON: {e}"))?;
        let media = raw
            .media_type
            .clone()
            .or_else(|| content_type.map(str::to_owned))
            .unwrap_or_default();
        if DOCKER_SCHEMA1.contains(&media.as_str()) || raw.schema_version == Some(1) {
            return Err("Docker schema 1 manifests are not supported (deprecated; push the image again with a current tool)".into());
        }
        match (raw.manifests, raw.config, raw.layers) {
            (Some(manifests), _, _) if media != OCI_MANIFEST && media != DOCKER_MANIFEST => {
                Ok(Manifest::Index { manifests })
            }
            (_, Some(config), Some(layers)) => Ok(Manifest::Image { config, layers }),
            _ => Err(format!("unsupported manifest media type {media:?}")),
        }
    }
}

/// The node's platform, in OCI terms.
pub fn host_platform() -> Platform {
    let (arch, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", ""),
        "aarch64" => ("arm64", "v8"),
        "arm" => ("arm", "v7"),
        "x86" => ("386", ""),
        "powerpc64" => ("ppc64le", ""),
        other => (other, ""),
    };
    Platform {
        os: "linux".into(),
        architecture: arch.into(),
        variant: variant.into(),
    }
}

/// How well `candidate` fits `host`: None if it cannot run, higher is
/// better. Follows containerd's rules: amd64 runs v1 images (and those
/// without a variant); arm64 treats "" and "v8" alike; arm v7 runs v7, v6
/// and v5, preferring the newest.
pub fn platform_score(host: &Platform, candidate: &Platform) -> Option<u32> {
    if candidate.os != host.os || candidate.architecture != host.architecture {
        return None;
    }
    let v = candidate.variant.as_str();
    match host.architecture.as_str() {
        "amd64" => match v {
            "" => Some(2),
            "v1" => Some(1),
            _ => None,
        },
        "arm64" => matches!(v, "" | "v8").then_some(2),
        "arm" => {
            let level = |s: &str| s.strip_prefix('v').and_then(|n| n.parse::<u32>().ok());
            let host_level = level(&host.variant).unwrap_or(7);
            match level(v) {
                Some(l) if l <= host_level => Some(l),
                None if v.is_empty() => Some(1),
                _ => None,
            }
        }
        _ => (v == host.variant || v.is_empty()).then_some(1),
    }
}

/// The index entry to pull on this node.
pub fn choose<'a>(host: &Platform, manifests: &'a [Descriptor]) -> Option<&'a Descriptor> {
    manifests
        .iter()
        .filter_map(|d| {
            let p = d.platform.as_ref()?;
            platform_score(host, p).map(|s| (s, d))
        })
        .max_by_key(|(s, _)| *s)
        .map(|(_, d)| d)
}

/// The parts of an image config berth uses.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: String,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct RootFs {
    #[serde(default, rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
}

impl ImageConfig {
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("image config is not valid: {e}"))
    }

    pub fn user(&self) -> &str {
        self.config
            .as_ref()
            .and_then(|c| c.user.as_deref())
            .unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(os: &str, arch: &str, variant: &str) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.into(),
        }
    }

    fn desc(n: u8, platform: Platform) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: Digest::of(&[n]),
            size: 1,
            platform: Some(platform),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn platform_rules() {
        let amd = p("linux", "amd64", "");
        assert!(platform_score(&amd, &p("linux", "amd64", "v1")).is_some());
        assert!(platform_score(&amd, &p("linux", "amd64", "v3")).is_none());
        assert!(platform_score(&amd, &p("windows", "amd64", "")).is_none());
        let arm64 = p("linux", "arm64", "v8");
        assert!(platform_score(&arm64, &p("linux", "arm64", "")).is_some());
        let arm7 = p("linux", "arm", "v7");
        assert!(platform_score(&arm7, &p("linux", "arm", "v6")).is_some());
        assert!(platform_score(&arm7, &p("linux", "arm", "v8")).is_none());
        let list = [
            desc(1, p("linux", "arm", "v5")),
            desc(2, p("linux", "arm", "v7")),
            desc(3, p("linux", "arm", "v6")),
        ];
        assert_eq!(choose(&arm7, &list).unwrap().digest, Digest::of(&[2]));
    }

    #[test]
    fn chooses_the_host_entry_of_an_index() {
        let host = host_platform();
        let list = [
            desc(1, p("linux", "s390x", "")),
            desc(2, host.clone()),
            desc(3, p("windows", &host.architecture, "")),
        ];
        assert_eq!(choose(&host, &list).unwrap().digest, Digest::of(&[2]));
        assert!(choose(&host, &list[..1]).is_none());
    }

    #[test]
    fn parses_manifests_and_indexes() {
        let d = Digest::of(b"c");
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"x","digest":"{d}","size":1}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{d}","size":2}}]}}"#
        );
        assert!(
            matches!(Manifest::parse(m.as_bytes(), None).unwrap(), Manifest::Image { layers, .. } if layers.len() == 1)
        );
        let i = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":3,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        );
        assert!(matches!(
            Manifest::parse(i.as_bytes(), Some(OCI_INDEX)).unwrap(),
            Manifest::Index { .. }
        ));
        let s1 = r#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert!(
            Manifest::parse(s1.as_bytes(), None)
                .unwrap_err()
                .contains("schema 1")
        );
        assert!(
            Manifest::parse(b"{}", Some("text/html"))
                .unwrap_err()
                .contains("unsupported")
        );
    }

    #[test]
    fn layer_media_types() {
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            layer_compression("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar"),
            Some(Compression::None)
        );
        assert_eq!(
            layer_compression("application/vnd.cncf.helm.chart.content.v1.tar+gzip"),
            None
        );
    }
}
