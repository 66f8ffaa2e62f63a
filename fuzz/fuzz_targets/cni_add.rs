//! A real CNI ADD (`berth_cni::client::Cni::add`, then `cached_result` and
//! `del`) against a fake plugin whose stdout is the fuzz input: the path a
//! plugin's result takes through berth (parsing, conversion to the list's
//! cniVersion, pod IP selection, the result cache).
//!
//! The fake plugin does not read its stdin, as some real ones do not:
//! berth's write then fails with EPIPE, which berthd (a Rust main, SIGPIPE
//! ignored) survives; the target ignores SIGPIPE likewise.
//!
//! Input: byte 0 picks the network list's cniVersion (one of
//! `SUPPORTED_VERSIONS`, one conf dir each) and, with its bit 7, a plugin
//! exit status of 1 instead of 0; the rest is what the plugin prints, for
//! ADD and for DEL alike. Each run forks a shell, so this target is slow
//! (tens of runs a second on a busy 2-core machine); `cni_result` covers
//! the parsing without processes.
//!
//! Asserted:
//! - no panic;
//! - on success: the raw result is in the list's cniVersion; the pod IPs
//!   are addresses of the plugin's result, `ipv4`/`ipv6` the first of each
//!   family; `cached_result` gives the same network, IPs and raw result;
//!   after DEL succeeds the cache entry is gone;
//! - on failure: nothing is left in the cache.
#![no_main]

use std::collections::HashSet;
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth_cni::SUPPORTED_VERSIONS;
use berth_cni::client::{Attachment, ClientConfig, Cni};
use libfuzzer_sys::fuzz_target;
use rscni_types::types::CNIResult;

const CID: &str = "fuzzpod0";

struct Net {
    cni: Cni,
    cache_dir: PathBuf,
    version: &'static str,
}

struct Env {
    _tmp: tempfile::TempDir,
    out: PathBuf,
    code: PathBuf,
    nets: Vec<Net>,
    rt: tokio::runtime::Runtime,
}

fn env() -> &'static Env {
    static E: OnceLock<Env> = OnceLock::new();
    E.get_or_init(|| {
        // A Rust main ignores SIGPIPE (berthd does); libFuzzer's main does
        // not, and the fake plugin exits without reading its stdin.
        // SAFETY: setting a signal disposition to SIG_IGN is always sound.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        let shm = Path::new("/dev/shm");
        let tmp = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("temp dir");
        let bin = tmp.path().join("bin");
        fs::create_dir(&bin).expect("mkdir bin");
        let out = tmp.path().join("stdout");
        let code = tmp.path().join("status");
        let script = bin.join("fake");
        fs::write(
            &script,
            format!(
                "#!/bin/sh\ncat '{}'\nexit \"$(cat '{}')\"\n",
                out.display(),
                code.display()
            ),
        )
        .expect("write plugin");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod plugin");
        let nets = SUPPORTED_VERSIONS
            .iter()
            .enumerate()
            .map(|(i, version)| {
                let conf_dir = tmp.path().join(format!("net.d-{i}"));
                let cache_dir = tmp.path().join(format!("results-{i}"));
                fs::create_dir(&conf_dir).expect("mkdir conf");
                fs::write(
                    conf_dir.join("10-fuzz.conflist"),
                    format!(
                        r#"{{"cniVersion":"{version}","name":"fuzznet","plugins":[{{"type":"fake","capabilities":{{"portMappings":true}}}}]}}"#
                    ),
                )
                .expect("write conflist");
                let mut cfg = ClientConfig::new(&berth_cni::Config::default(), &cache_dir);
                cfg.conf_dir = conf_dir;
                cfg.bin_dirs = vec![bin.clone()];
                Net {
                    cni: Cni::new(cfg),
                    cache_dir,
                    version,
                }
            })
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Env {
            out,
            code,
            nets,
            rt,
            _tmp: tmp,
        }
    })
}

fn cache_files(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, stdout)) = data.split_first() else {
        return;
    };
    let e = env();
    let net = &e.nets[usize::from(sel & 0x7f) % e.nets.len()];
    fs::write(&e.out, stdout).expect("write plugin output");
    fs::write(&e.code, if sel & 0x80 != 0 { "1" } else { "0" }).expect("write status");

    let a = Attachment::new(CID, "/run/netns/fuzz");
    let added = e.rt.block_on(net.cni.add(&a));
    match &added {
        Ok(res) => {
            assert_eq!(
                res.raw.get("cniVersion").and_then(|v| v.as_str()),
                Some(net.version),
                "result not in the list's version"
            );
            let plugin: Option<CNIResult> = serde_json::from_slice(stdout).ok();
            if let Some(p) = plugin {
                let all: HashSet<IpAddr> = p.ips.iter().map(|i| i.address.addr()).collect();
                assert!(
                    res.ips.iter().all(|ip| all.contains(ip)),
                    "pod IP not in the result"
                );
            }
            assert_eq!(
                res.ipv4.map(IpAddr::V4),
                res.ips
                    .iter()
                    .map(|i| i.to_canonical())
                    .find(IpAddr::is_ipv4)
            );
            assert_eq!(
                res.ipv6.map(IpAddr::V6),
                res.ips
                    .iter()
                    .map(|i| i.to_canonical())
                    .find(IpAddr::is_ipv6)
            );
            let cached =
                e.rt.block_on(net.cni.cached_result(CID, &a.ifname))
                    .expect("cached_result")
                    .expect("ADD cached its result");
            assert_eq!(cached.network, res.network);
            assert_eq!(cached.ips, res.ips);
            assert_eq!(cached.raw, res.raw);
            if e.rt.block_on(net.cni.del(&a)).is_ok() {
                assert_eq!(
                    cache_files(&net.cache_dir),
                    Vec::<String>::new(),
                    "DEL left its cache"
                );
            }
        }
        Err(err) => {
            let _ = err.to_string();
            let _ = err.cni_code();
            assert_eq!(
                cache_files(&net.cache_dir),
                Vec::<String>::new(),
                "failed ADD left a cache entry: {err}"
            );
        }
    }
    // Whatever happened, start the next run clean.
    let _ = fs::remove_dir_all(&net.cache_dir);
});
