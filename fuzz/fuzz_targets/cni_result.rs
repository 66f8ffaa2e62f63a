//! What berth's CNI side parses, without running a plugin (the `cni_add`
//! target runs a real ADD against a fake plugin):
//! - network config lists and single-plugin confs
//!   (`berth_cni::NetworkConfigList::parse`, public);
//! - the client's result cache (`berth_cni::client::Cni::cached_result`
//!   and `Cni::del`, public, which read `<cache_dir>/<net>-<id>-<ifname>`):
//!   the input is written there as is, and also wrapped as the `result` of
//!   a well-formed cache entry, so that a bare CNI result reaches the
//!   result parsing (`CNIResult`) and the pod IP selection behind
//!   `AddResult`;
//! - version conversion of a plugin result exactly as the client's
//!   `normalize_result` does it (that function is crate-private, so its
//!   steps are repeated here with the same rscni-types calls).
//!
//! Asserted:
//! - no panic;
//! - a parsed list has a valid name, a supported cniVersion and at least
//!   one plugin, each with a plain-file-name type; serialized as the
//!   client caches it, it parses back to the same list;
//! - a cached result's pod IPs come from the result, `ipv4`/`ipv6` are the
//!   first of each family among them, and `raw` is the cached JSON;
//! - DEL of a corrupt cache file removes it; DEL never runs a plugin
//!   here (the bin dir is empty) and never panics;
//! - a result converted to another supported version and back keeps its
//!   addresses.
#![no_main]

use std::collections::HashSet;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth_cni::client::{Attachment, ClientConfig, Cni};
use berth_cni::{NetworkConfigList, SUPPORTED_VERSIONS};
use libfuzzer_sys::fuzz_target;
use rscni_types::types::{CNIResult, CNIResultWithVersion};
use rscni_types::version::SpecVersion;
use serde_json::{Map, Value, json};

const CID: &str = "0123456789abcdef";
const IFNAME: &str = "eth0";

struct Env {
    _tmp: tempfile::TempDir,
    cache_dir: PathBuf,
    cni: Cni,
    rt: tokio::runtime::Runtime,
}

fn env() -> &'static Env {
    static E: OnceLock<Env> = OnceLock::new();
    E.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let tmp = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("temp dir");
        let conf_dir = tmp.path().join("net.d");
        let bin_dir = tmp.path().join("bin");
        let cache_dir = tmp.path().join("results");
        for d in [&conf_dir, &bin_dir, &cache_dir] {
            fs::create_dir_all(d).expect("mkdir");
        }
        let mut cfg = ClientConfig::new(&berth_cni::Config::default(), &cache_dir);
        cfg.conf_dir = conf_dir;
        cfg.bin_dirs = vec![bin_dir];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Env {
            cni: Cni::new(cfg),
            cache_dir,
            rt,
            _tmp: tmp,
        }
    })
}

/// `conf::list_json`, the form the client caches a list in.
fn list_json(l: &NetworkConfigList) -> Value {
    let mut obj = Map::new();
    obj.insert("cniVersion".into(), Value::String(l.cni_version.clone()));
    obj.insert("name".into(), Value::String(l.name.clone()));
    if l.disable_check {
        obj.insert("disableCheck".into(), Value::Bool(true));
    }
    if l.disable_gc {
        obj.insert("disableGC".into(), Value::Bool(true));
    }
    obj.insert(
        "plugins".into(),
        Value::Array(
            l.plugins
                .iter()
                .map(|p| Value::Object(p.conf.clone()))
                .collect(),
        ),
    );
    Value::Object(obj)
}

fn check_list(data: &[u8]) {
    for single in [false, true] {
        let Ok(l) = NetworkConfigList::parse(data, single, PathBuf::from("x.conflist")) else {
            continue;
        };
        let mut c = l.name.chars();
        assert!(
            c.next().is_some_and(|c| c.is_ascii_alphanumeric()),
            "name {:?}",
            l.name
        );
        assert!(
            c.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
            "name {:?}",
            l.name
        );
        assert!(SUPPORTED_VERSIONS.contains(&l.cni_version.as_str()));
        assert!(!l.plugins.is_empty());
        for p in &l.plugins {
            assert!(!p.plugin_type.is_empty());
            assert!(!p.plugin_type.contains('/') && !p.plugin_type.starts_with('.'));
        }
        let bytes = serde_json::to_vec(&list_json(&l)).expect("serializes");
        let back = NetworkConfigList::parse(&bytes, false, l.source.clone())
            .unwrap_or_else(|e| panic!("cached form of a list is refused: {e}"));
        assert_eq!(back, l, "list round trip (single={single})");
    }
}

fn result_ips(v: &Value) -> Option<HashSet<IpAddr>> {
    let r: CNIResult = serde_json::from_value(v.clone()).ok()?;
    Some(r.ips.iter().map(|ip| ip.address.addr()).collect())
}

fn check_cache(file: &[u8]) {
    let e = env();
    let path = e.cache_dir.join(format!("net-{CID}-{IFNAME}"));
    fs::write(&path, file).expect("write cache file");
    let got = e.rt.block_on(e.cni.cached_result(CID, IFNAME));
    if let Ok(Some(res)) = &got {
        let entry: Value = serde_json::from_slice(file).expect("a read entry is JSON");
        let cached = &entry["result"];
        assert_eq!(&res.raw, cached, "raw is not the cached result");
        let all = result_ips(cached).expect("the result parsed once already");
        assert!(
            res.ips.iter().all(|ip| all.contains(ip)),
            "pod IP not in the result"
        );
        assert_eq!(
            res.ipv4.map(IpAddr::V4),
            res.ips
                .iter()
                .find(|i| i.to_canonical().is_ipv4())
                .map(|i| i.to_canonical())
        );
        assert_eq!(
            res.ipv6.map(IpAddr::V6),
            res.ips
                .iter()
                .find(|i| i.to_canonical().is_ipv6())
                .map(|i| i.to_canonical())
        );
        assert!(res.pod_ips().len() <= 2);
    }
    let corrupt = serde_json::from_slice::<Value>(file)
        .ok()
        .and_then(|v| (v.get("kind")? == "berthCniCacheV1").then_some(v))
        .is_none();
    let mut a = Attachment::new(CID, "/run/netns/fuzz");
    a.ifname = IFNAME.into();
    let del = e.rt.block_on(e.cni.del(&a));
    if del.is_ok() && corrupt && !file.is_empty() {
        // Unparsable: DEL cleans it up. (A file whose JSON parses but
        // misses fields is corrupt too; `corrupt` only flags the obvious.)
        assert!(!path.exists(), "DEL kept a corrupt cache file");
    }
    let _ = fs::remove_file(&path);
}

fn check_conversion(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Some(got) = value.get("cniVersion").and_then(Value::as_str) else {
        return;
    };
    let Ok(got_v) = got.parse::<SpecVersion>() else {
        return;
    };
    if !got_v.is_supported() {
        return;
    }
    let Ok(parsed) = serde_json::from_value::<CNIResult>(value.clone()) else {
        return;
    };
    let before: Vec<IpAddr> = parsed.ips.iter().map(|i| i.address.addr()).collect();
    for want in SUPPORTED_VERSIONS {
        let want_v: SpecVersion = want.parse().expect("supported version parses");
        let converted = if want_v.is_legacy() {
            serde_json::to_value(rscni_types::legacy::CNIResult::new(want_v, parsed.clone()))
        } else {
            serde_json::to_value(CNIResultWithVersion::new(want_v, parsed.clone()))
        };
        let Ok(converted) = converted else { continue };
        assert_eq!(converted["cniVersion"], json!(want));
        let back: CNIResult = serde_json::from_value(converted.clone())
            .unwrap_or_else(|e| panic!("{got} -> {want} does not parse back: {e}\n{converted}"));
        let after: Vec<IpAddr> = back.ips.iter().map(|i| i.address.addr()).collect();
        assert_eq!(before, after, "{got} -> {want} changed the addresses");
    }
}

fuzz_target!(|data: &[u8]| {
    check_list(data);
    check_conversion(data);
    check_cache(data);
    // The input as the result of an otherwise valid cache entry.
    if let Ok(result) = serde_json::from_slice::<Value>(data) {
        let entry = json!({
            "kind": "berthCniCacheV1",
            "networkName": "net",
            "containerId": CID,
            "ifName": IFNAME,
            "netns": "/run/netns/fuzz",
            "cniArgs": [["IgnoreUnknown", "1"]],
            "capabilityArgs": {},
            "config": {"cniVersion": "1.0.0", "name": "net", "plugins": [{"type": "fake"}]},
            "result": result,
        });
        check_cache(&serde_json::to_vec(&entry).expect("serializes"));
    }
});
