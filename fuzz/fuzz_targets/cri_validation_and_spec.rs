//! CRI request validation (`berth_cri::validate::{pod, container}`) and,
//! for containers that pass it, CRI → OCI spec generation
//! (`berth_spec::generate_with`, on a fixed description of the host).
//!
//! Input: up to five sections separated by `\n#-#\n`:
//! 1. the `ContainerConfig`: a crictl-style container config (JSON or YAML,
//!    read by `berth_cli::container_config`, as `berth create` does) when
//!    it parses as one, else protobuf (as kubelet sends it, decoded with
//!    prost);
//! 2. the `PodSandboxConfig`, protobuf (empty: default);
//! 3. the image config JSON (oci_spec `ImageConfiguration`, as
//!    CreateContainer reads it; invalid or empty: default);
//! 4. the image's `/etc/passwd` and 5. `/etc/group` (absent: no file).
//!
//! Like berthd's CreateContainer, the spec is generated when the
//! container config validates, whatever the pod config (CreateContainer
//! does not validate the sandbox config it is sent again).
//!
//! Asserted:
//! - no panic (validation, generation, spec serialization, exec process);
//! - validation: what `container` accepts has a metadata name of 1-253
//!   `[A-Za-z0-9._-]`, an image, env names non-empty without `=`, an
//!   absolute working dir and mount/device container paths without `..`;
//!   it returns the metadata's name and attempt; what `pod` accepts has
//!   name, namespace and uid of that form;
//! - spec: root is the rootfs, read-only as asked; args are CRI command +
//!   args when a command is given, never empty; cwd is absolute and the
//!   CRI working dir when given; every env entry is `K=V`, keys are unique
//!   and each CRI env's last value is the one set; uid/gid are
//!   run_as_user/run_as_group when given; effective and permitted caps are
//!   within the bounding set, which (unprivileged) holds only containerd's
//!   defaults, the host's capabilities and caps named in adds, and none
//!   named in a drop (ambient adds aside); every mount destination is
//!   absolute without `..`; the CRI annotations are kept (berth's own keys
//!   aside); oom_score_adj is never below the daemon's; the spec survives
//!   a JSON round trip (the shim writes it as config.json); an exec
//!   process can be derived from it; a configured default pids limit
//!   leaves the spec with a pids limit.
//!
//! `BERTH_FUZZ_DEBUG=1` prints why an input stopped at validation or
//! generation (to check that seeds reach the spec).
#![no_main]

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use berth_spec::{Host, PidNs, Sandbox, SpecInput, caps};
use k8s_cri::v1 as cri;
use libfuzzer_sys::fuzz_target;
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{Capability, Spec};
use prost::Message;

const SEP: &[u8] = b"\n#-#\n";
const MIN_OOM: i32 = -500;
const PIDS_LIMIT: i64 = 4096;

struct Env {
    _tmp: tempfile::TempDir,
    rootfs: PathBuf,
    sandboxes: [Sandbox; 2],
    hosts: [Host; 2],
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
        let d = tmp.path();
        let rootfs = d.join("rootfs");
        fs::create_dir_all(rootfs.join("etc")).expect("rootfs");
        for f in ["hostname", "hosts", "resolv.conf"] {
            fs::write(d.join(f), "x\n").expect("pod file");
        }
        fs::create_dir(d.join("shm")).expect("shm");
        fs::create_dir(d.join("dev")).expect("dev");
        let pod = Sandbox {
            netns: Some("/run/berth/netns/pod".into()),
            ipc_ns: Some("/run/berth/ipcns/pod".into()),
            uts_ns: Some("/run/berth/utsns/pod".into()),
            user_ns: None,
            pid: PidNs::Container,
            hostname: "pod-host".into(),
            hostname_file: Some(d.join("hostname")),
            hosts_file: Some(d.join("hosts")),
            resolv_conf: Some(d.join("resolv.conf")),
            shm: Some(d.join("shm")),
        };
        let host_ns = Sandbox {
            netns: None,
            ipc_ns: None,
            uts_ns: None,
            user_ns: None,
            pid: PidNs::Pod("/proc/1/ns/pid".into()),
            hostname: "node".into(),
            hostname_file: None,
            hosts_file: Some(d.join("hosts")),
            resolv_conf: Some(d.join("resolv.conf")),
            shm: None,
        };
        let full = Host {
            cgroup2: true,
            swap_available: true,
            capabilities: caps::all_known(),
            apparmor_enabled: false,
            kernel: (6, 1),
            dev_dir: d.join("dev"),
            mountinfo: Some("1 0 0:1 / / rw shared:1 - ext4 /dev/sda rw\n".into()),
            apparmor_profiles: Some(String::new()),
        };
        let small = Host {
            cgroup2: false,
            swap_available: false,
            capabilities: caps::DEFAULT.to_vec(),
            apparmor_enabled: true,
            kernel: (4, 19),
            dev_dir: d.join("dev"),
            mountinfo: Some(
                "1 0 0:1 / / rw - ext4 /dev/sda rw\n2 1 0:2 /data /data rw shared:2 - ext4 /dev/sdb rw\n"
                    .into(),
            ),
            apparmor_profiles: Some("fuzz-profile (enforce)\n".into()),
        };
        Env {
            rootfs,
            sandboxes: [pod, host_ns],
            hosts: [full, small],
            _tmp: tmp,
        }
    })
}

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() < 4 {
        match rest.windows(SEP.len()).position(|w| w == SEP) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + SEP.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out
}

fn container_config(b: &[u8]) -> Option<cri::ContainerConfig> {
    if let Ok(text) = std::str::from_utf8(b)
        && let Ok(file) = berth_cli::container_config::parse(text)
    {
        return berth_cli::container_config::to_cri(file).ok();
    }
    cri::ContainerConfig::decode(b).ok()
}

fn is_identifier(v: &str) -> bool {
    (1..=253).contains(&v.len())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn no_dotdot(p: &str) -> bool {
    !Path::new(p).components().any(|c| c == Component::ParentDir)
}

fn check_validation(c: &cri::ContainerConfig, pod: &cri::PodSandboxConfig) -> bool {
    let pod_ok = berth_cri::validate::pod(pod, "").is_ok();
    if pod_ok {
        let m = pod.metadata.as_ref().expect("valid pod has metadata");
        assert!(is_identifier(&m.name) && is_identifier(&m.namespace) && is_identifier(&m.uid));
    }
    let Ok((name, attempt)) = berth_cri::validate::container(c) else {
        return false;
    };
    let m = c.metadata.as_ref().expect("valid container has metadata");
    assert_eq!((name.as_str(), attempt), (m.name.as_str(), m.attempt));
    assert!(is_identifier(&m.name), "name {:?}", m.name);
    let image = c.image.as_ref().map(|i| i.image.as_str()).unwrap_or("");
    assert!(!image.is_empty() && !image.contains('\0'));
    for kv in &c.envs {
        assert!(
            !kv.key.is_empty() && !kv.key.contains('='),
            "env {:?}",
            kv.key
        );
    }
    if !c.working_dir.is_empty() {
        assert!(c.working_dir.starts_with('/') && no_dotdot(&c.working_dir));
    }
    for m in &c.mounts {
        assert!(m.container_path.starts_with('/') && no_dotdot(&m.container_path));
    }
    for d in &c.devices {
        assert!(d.container_path.starts_with('/') && no_dotdot(&d.container_path));
    }
    true
}

/// The spec's JSON with the capability sets sorted.
fn sorted_sets(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(caps) = v
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut())
    {
        for set in caps.values_mut() {
            if let Some(a) = set.as_array_mut() {
                a.sort_by_key(|x| x.to_string());
            }
        }
    }
    v
}

fn env_key(e: &str) -> &str {
    e.split('=').next().unwrap_or("")
}

fn check_spec(spec: &Spec, c: &cri::ContainerConfig, host: &Host, rootfs: &Path) {
    let sc = c.linux.as_ref().and_then(|l| l.security_context.as_ref());
    let root = spec.root().as_ref().expect("root");
    assert_eq!(root.path(), rootfs);
    assert_eq!(root.readonly(), Some(sc.is_some_and(|s| s.readonly_rootfs)));

    let p = spec.process().as_ref().expect("process");
    let args = p.args().as_deref().unwrap_or_default();
    assert!(!args.is_empty(), "no args");
    if !c.command.is_empty() {
        let want: Vec<String> = c.command.iter().chain(&c.args).cloned().collect();
        assert_eq!(args, &want[..], "args");
    }
    let cwd = p.cwd().to_str().expect("cwd is UTF-8");
    assert!(cwd.starts_with('/'), "cwd {cwd:?}");
    if !c.working_dir.is_empty() {
        assert_eq!(cwd, c.working_dir);
    }

    let env = p.env().as_deref().unwrap_or_default();
    let mut keys = HashSet::new();
    for e in env {
        assert!(e.contains('='), "env entry {e:?} without '='");
        assert!(
            keys.insert(env_key(e)),
            "env key {:?} twice: {env:?}",
            env_key(e)
        );
    }
    let mut last: HashMap<&str, &str> = HashMap::new();
    for kv in &c.envs {
        last.insert(&kv.key, &kv.value);
    }
    for (k, v) in last {
        let want = format!("{k}={v}");
        assert!(
            env.iter().any(|e| *e == want),
            "CRI env {want:?} not in {env:?}"
        );
    }

    if let Some(sc) = sc {
        if let Some(u) = &sc.run_as_user {
            assert_eq!(i64::from(p.user().uid()), u.value, "uid");
        }
        if let Some(g) = &sc.run_as_group {
            assert_eq!(i64::from(p.user().gid()), g.value, "gid");
        }
    }

    let privileged = sc.is_some_and(|s| s.privileged);
    if let Some(cs) = p.capabilities() {
        let bounding = cs.bounding().clone().unwrap_or_default();
        for set in [cs.effective(), cs.permitted()] {
            for cap in set.iter().flatten() {
                assert!(bounding.contains(cap), "{cap:?} outside the bounding set");
            }
        }
        if !privileged {
            let named = |list: &[String]| -> HashSet<Capability> {
                list.iter().filter_map(|n| caps::parse(n).ok()).collect()
            };
            let cri_caps = sc.and_then(|s| s.capabilities.clone()).unwrap_or_default();
            let adds = named(&cri_caps.add_capabilities);
            let ambient = named(&cri_caps.add_ambient_capabilities);
            for cap in &bounding {
                assert!(
                    caps::DEFAULT.contains(cap)
                        || host.capabilities.contains(cap)
                        || adds.contains(cap)
                        || ambient.contains(cap),
                    "{cap:?} granted from nowhere"
                );
            }
            for cap in named(&cri_caps.drop_capabilities) {
                if !ambient.contains(&cap) {
                    assert!(!bounding.contains(&cap), "dropped {cap:?} still granted");
                }
            }
        }
    }

    for m in spec.mounts().iter().flatten() {
        let d = m.destination().to_str().expect("destination is UTF-8");
        assert!(
            d.starts_with('/') && no_dotdot(d),
            "mount destination {d:?}"
        );
    }

    let ann = spec.annotations().clone().unwrap_or_default();
    for (k, v) in &c.annotations {
        if !k.starts_with("io.kubernetes.cri.") {
            assert_eq!(ann.get(k), Some(v), "annotation {k:?} lost");
        }
    }
    if let Some(adj) = p.oom_score_adj() {
        assert!(
            adj >= MIN_OOM,
            "oom_score_adj {adj} below the daemon's {MIN_OOM}"
        );
    }

    // config.json round trip (capability sets are hash sets: any order).
    let json = serde_json::to_value(spec).expect("spec serializes");
    let back: Spec = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("spec does not read back: {e}\n{json}"));
    assert_eq!(
        sorted_sets(serde_json::to_value(&back).expect("serializes")),
        sorted_sets(json),
        "spec round trip"
    );

    let exec = berth_spec::process_for_exec(spec, &["sh".to_string()]).expect("exec process");
    assert_eq!(exec.args().as_deref(), Some(&["sh".to_string()][..]));
    assert_eq!(exec.user(), p.user());
    assert_eq!(exec.env(), p.env());
}

fuzz_target!(|data: &[u8]| {
    let parts = split(data);
    let Some(config) = container_config(parts[0]) else {
        return;
    };
    let pod = match parts.get(1) {
        Some(b) => match cri::PodSandboxConfig::decode(*b) {
            Ok(p) => p,
            Err(_) => return,
        },
        None => cri::PodSandboxConfig::default(),
    };
    if !check_validation(&config, &pod) {
        if std::env::var_os("BERTH_FUZZ_DEBUG").is_some() {
            eprintln!(
                "validate: {:?}",
                berth_cri::validate::container(&config)
                    .err()
                    .map(|s| s.message().to_owned())
            );
        }
        return;
    }

    let e = env();
    let image: ImageConfiguration = parts
        .get(2)
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or_default();
    for (i, name) in ["passwd", "group"].into_iter().enumerate() {
        let path = e.rootfs.join("etc").join(name);
        match parts.get(3 + i) {
            Some(b) => fs::write(&path, b).expect("write etc file"),
            None => {
                let _ = fs::remove_file(&path);
            }
        }
    }
    // Host and sandbox flavour from the input, deterministically.
    let h = data.iter().fold(0u8, |h, &b| h.rotate_left(1) ^ b);
    let host = &e.hosts[usize::from(h & 1)];
    let sandbox = &e.sandboxes[usize::from((h >> 1) & 1)];
    let rlimits =
        berth_spec::rlimits::parse_rlimits(&["nofile=1024:2048".into()]).expect("rlimits parse");
    let input = SpecInput {
        id: "c1",
        config: &config,
        sandbox_config: &pod,
        image: &image,
        rootfs: &e.rootfs,
        sandbox,
        cgroups_path: "/kubepods/pod1/c1".into(),
        min_oom_score_adj: MIN_OOM,
        rlimits: if h & 4 != 0 { &rlimits } else { &[] },
        pids_limit: if h & 8 != 0 { PIDS_LIMIT } else { 0 },
    };
    match berth_spec::generate_with(&input, host) {
        Ok(spec) => {
            check_spec(&spec, &config, host, &e.rootfs);
            // The daemon's default pids limit applies when the CRI sets none.
            let pids = spec
                .linux()
                .as_ref()
                .and_then(|l| l.resources().as_ref())
                .and_then(|r| r.pids().as_ref())
                .map(|p| p.limit());
            if input.pids_limit > 0 {
                assert!(
                    pids.is_some(),
                    "pids limit {} not applied",
                    input.pids_limit
                );
            }
        }
        Err(err) => {
            if std::env::var_os("BERTH_FUZZ_DEBUG").is_some() {
                eprintln!("generate: {err}");
            }
            let _ = err.to_string();
            let _ = err.is_invalid_argument();
        }
    }
});
