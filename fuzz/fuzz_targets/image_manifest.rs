//! What berth parses of what a registry (or an image author) serves:
//! manifests and indexes (`berth_image::manifest::Manifest::parse`, with
//! every content type berth asks for), image configs (berth's own
//! `ImageConfig::parse`, and `oci_spec`'s `ImageConfiguration` as
//! CreateContainer reads it, with its StopSignal through
//! `berth_spec::stop_signal`), the image metadata berth keeps in its store
//! (`meta::ImageRecord`, `meta::SnapshotRecord`), digests and image
//! references (`ImageRef::parse`, as kubelet sends them).
//!
//! Every parser sees every input (they are cheap). Asserted:
//! - no panic anywhere;
//! - a manifest document naming its own `mediaType` parses the same
//!   whatever Content-Type header came with it;
//! - a parsed manifest is never schema 1; its descriptors survive a JSON
//!   round trip; `choose` picks an entry that can run on the host and that
//!   no other entry beats;
//! - an image config (without floats in `Volumes`, which serde_json does
//!   not round-trip exactly) and store records survive a JSON round trip;
//!   `chain_ids` has one id per diff id, the first being the first diff id;
//! - a parsed digest prints as it was written (`Digest::from_str`) or as
//!   `sha256:` + its lowercased hex (`parse_loose`);
//! - a parsed image reference has exactly one of tag and digest, a
//!   repository of at most 255 bytes, prints to a string that parses back
//!   to the same reference (normalization is idempotent);
//! - a StopSignal that parses is a valid signal number (1..=SIGRTMAX).
#![no_main]

use std::str::FromStr;

use berth_image::digest::{Digest, chain_ids};
use berth_image::manifest::{
    self, DOCKER_LIST, DOCKER_MANIFEST, Descriptor, ImageConfig, Manifest, OCI_INDEX, OCI_MANIFEST,
};
use berth_image::meta::{ImageRecord, SnapshotRecord};
use berth_image::reference::ImageRef;
use libfuzzer_sys::fuzz_target;

const SIGRTMAX: i32 = 64;

fn round_trip<T>(v: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let bytes = serde_json::to_vec(v).expect("serializes");
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "does not parse back: {e}\n{}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

fn has_float(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => n.is_f64(),
        serde_json::Value::Array(a) => a.iter().any(has_float),
        serde_json::Value::Object(o) => o.values().any(has_float),
        _ => false,
    }
}

fn check_descriptor(d: &Descriptor) {
    assert_eq!(&round_trip(d), d, "descriptor round trip");
    let _ = manifest::layer_compression(&d.media_type);
    if let Some(p) = &d.platform {
        let _ = p.to_string();
    }
}

fn manifests(data: &[u8]) {
    let results: Vec<Result<Manifest, String>> = [
        None,
        Some(OCI_INDEX),
        Some(DOCKER_LIST),
        Some(OCI_MANIFEST),
        Some(DOCKER_MANIFEST),
        Some("application/octet-stream"),
    ]
    .into_iter()
    .map(|ct| Manifest::parse(data, ct))
    .collect();

    // With its own mediaType, the header does not matter.
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice::<serde_json::Value>(data)
        && matches!(o.get("mediaType"), Some(serde_json::Value::String(_)))
        && results[0].is_ok()
    {
        for r in &results[1..] {
            assert_eq!(
                r, &results[0],
                "Content-Type changed a self-describing manifest"
            );
        }
    }

    let host = manifest::host_platform();
    for r in results.iter().flatten() {
        if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice::<serde_json::Value>(data)
        {
            assert_ne!(
                o.get("schemaVersion").and_then(|v| v.as_u64()),
                Some(1),
                "schema 1 accepted"
            );
        }
        match r {
            Manifest::Image { config, layers } => {
                check_descriptor(config);
                layers.iter().for_each(check_descriptor);
            }
            Manifest::Index { manifests } => {
                manifests.iter().for_each(check_descriptor);
                let best = manifests
                    .iter()
                    .filter_map(|d| manifest::platform_score(&host, d.platform.as_ref()?))
                    .max();
                match manifest::choose(&host, manifests) {
                    Some(d) => {
                        let p = d.platform.as_ref().expect("chosen entry has a platform");
                        let s = manifest::platform_score(&host, p).expect("chosen entry runs here");
                        assert_eq!(Some(s), best, "a better entry was passed over");
                    }
                    None => assert_eq!(best, None, "a runnable entry was not chosen"),
                }
            }
        }
    }
}

fn image_configs(data: &[u8]) {
    if let Ok(c) = ImageConfig::parse(data) {
        let _ = c.user();
        let floats = c
            .config
            .as_ref()
            .and_then(|r| r.volumes.as_ref())
            .is_some_and(|v| v.values().any(has_float));
        if !floats {
            assert_eq!(round_trip(&c), c, "image config round trip");
        }
        let chain = chain_ids(&c.rootfs.diff_ids);
        assert_eq!(chain.len(), c.rootfs.diff_ids.len());
        if let (Some(a), Some(b)) = (chain.first(), c.rootfs.diff_ids.first()) {
            assert_eq!(a, b);
        }
    }
    // CreateContainer's reading of the same blob.
    if let Ok(c) = serde_json::from_slice::<oci_spec::image::ImageConfiguration>(data)
        && let Ok(sig) = berth_spec::stop_signal(&c)
    {
        assert!((1..=SIGRTMAX).contains(&sig), "stop signal {sig}");
    }
    if let Ok(r) = serde_json::from_slice::<ImageRecord>(data) {
        assert_eq!(round_trip(&r), r, "image record round trip");
    }
    if let Ok(r) = serde_json::from_slice::<SnapshotRecord>(data) {
        assert_eq!(round_trip(&r), r, "snapshot record round trip");
    }
}

fn strings(s: &str) {
    if let Ok(d) = Digest::from_str(s) {
        assert_eq!(d.to_string(), s, "digest does not print as parsed");
    }
    if let Ok(d) = Digest::parse_loose(s) {
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        assert_eq!(d.hex(), hex, "loose digest");
    }
    if let Ok(sig) = berth_spec::parse_signal(s) {
        assert!(
            (1..=SIGRTMAX).contains(&sig),
            "signal {s:?} parsed to {sig}"
        );
    }
    if let Ok(r) = ImageRef::parse(s) {
        assert!(
            r.tag.is_some() != r.digest.is_some(),
            "{s:?}: tag and digest {r:?}"
        );
        assert!(r.repository.len() <= 255, "{s:?}: long repository");
        assert_eq!(r.name(), format!("{}/{}", r.registry, r.repository));
        let printed = r.to_string();
        let again = ImageRef::parse(&printed)
            .unwrap_or_else(|e| panic!("{s:?} normalized to {printed:?}, which is refused: {e}"));
        assert_eq!(again, r, "{s:?} -> {printed:?} is not stable");
        if let Some(d) = r.digest {
            assert_eq!(r.with_digest(d), r);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    manifests(data);
    image_configs(data);
    if let Ok(s) = std::str::from_utf8(data) {
        strings(s);
    }
});
