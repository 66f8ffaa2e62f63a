//! End-to-end tests of [`generate_with`]: the pieces put together.

use super::*;
use crate::security::seccomp::eval::action;
use crate::testutil::{Fixture, host};
use k8s_cri::v1::{
    Capability as CriCapability, ContainerMetadata, ImageSpec, KeyValue, LinuxContainerResources,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, PodSandboxMetadata, SecurityProfile,
    security_profile::ProfileType,
};
use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};
use oci_spec::runtime::{Capability, LinuxNamespaceType, LinuxSeccompAction};

fn runtime_default() -> SecurityProfile {
    SecurityProfile {
        profile_type: ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    }
}

#[test]
fn basic_container() {
    let mut f = Fixture::new();
    std::fs::write(
        f.rootfs.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nweb:x:33:33::/var/www:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(f.rootfs.join("etc/group"), "www:x:33:\nshared:x:500:web\n").unwrap();
    f.image = ImageConfigurationBuilder::default()
        .config(
            ConfigBuilder::default()
                .user("web".to_string())
                .env(vec!["PATH=/usr/bin".to_string(), "MODE=image".to_string()])
                .entrypoint(vec!["/entry".to_string()])
                .cmd(vec!["serve".to_string()])
                .working_dir("/var/www".to_string())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    f.config.command.clear();
    f.config.envs = vec![KeyValue {
        key: "MODE".into(),
        value: "cri".into(),
    }];
    f.config.metadata = Some(ContainerMetadata {
        name: "web".into(),
        attempt: 0,
    });
    f.config.image = Some(ImageSpec {
        image: "docker.io/library/nginx:1".into(),
        ..Default::default()
    });
    f.config.annotations = [("a".to_string(), "b".to_string())].into();
    f.sandbox_config.metadata = Some(PodSandboxMetadata {
        name: "pod".into(),
        namespace: "ns".into(),
        uid: "u-1".into(),
        attempt: 0,
    });

    let spec = generate_with(&f.input(), &host()).unwrap();
    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.args().as_deref().unwrap(), ["/entry", "serve"]);
    assert_eq!(
        p.env().as_deref().unwrap(),
        ["PATH=/usr/bin", "HOSTNAME=pod-host", "MODE=cri"]
    );
    assert_eq!(p.cwd().to_str(), Some("/var/www"));
    assert_eq!((p.user().uid(), p.user().gid()), (33, 33));
    assert_eq!(p.user().additional_gids().as_deref(), Some(&[33, 500][..]));
    assert_eq!(p.terminal(), Some(false));
    assert_eq!(p.no_new_privileges(), Some(false));
    assert!(p.rlimits().is_none());
    assert!(p.oom_score_adj().is_none());

    // Configured default rlimits are set, and kept by exec processes.
    f.rlimits = crate::rlimits::parse_rlimits(&["nofile=1024:2048".into()]).unwrap();
    let spec = generate_with(&f.input(), &host()).unwrap();
    let r = spec.process().as_ref().unwrap().rlimits().clone().unwrap();
    assert_eq!((r.len(), r[0].soft(), r[0].hard()), (1, 1024, 2048));
    let exec = crate::process_for_exec(&spec, &["sh".to_string()]).unwrap();
    assert_eq!(exec.rlimits().as_ref().unwrap().len(), 1);
    // No pids limit unless configured; then in the cgroup resources.
    let pids = |spec: &oci_spec::runtime::Spec| {
        let r = spec.linux().as_ref().unwrap().resources().as_ref().unwrap();
        r.pids().as_ref().map(|p| p.limit())
    };
    assert_eq!(pids(&spec), None);
    f.pids_limit = 4096;
    assert_eq!(
        pids(&generate_with(&f.input(), &host()).unwrap()),
        Some(4096)
    );
    f.pids_limit = 0;
    let caps = p.capabilities().as_ref().unwrap();
    assert_eq!(caps.bounding().as_ref().unwrap().len(), 14);
    assert!(
        !caps
            .bounding()
            .as_ref()
            .unwrap()
            .contains(&Capability::SysAdmin)
    );

    let root = spec.root().as_ref().unwrap();
    assert_eq!(root.path(), &f.rootfs);
    assert_eq!(root.readonly(), Some(false));

    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(Path::new("/kubepods/pod1/c1"))
    );
    // No seccomp profile asked for: unconfined, as the CRI says.
    assert!(linux.seccomp().is_none());
    assert!(
        linux
            .masked_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/kcore".to_string())
    );
    let types: Vec<LinuxNamespaceType> = linux
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.typ())
        .collect();
    assert_eq!(
        types,
        [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Cgroup
        ]
    );
    let rules = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap();
    assert!(!rules[0].allow());
    assert!(linux.devices().is_none());
    assert!(linux.sysctl().is_none());

    let a = spec.annotations().as_ref().unwrap();
    assert_eq!(a["a"], "b");
    assert_eq!(a[annotations::CONTAINER_TYPE], "container");
    assert_eq!(a[annotations::CONTAINER_NAME], "web");
    assert_eq!(a[annotations::IMAGE_NAME], "docker.io/library/nginx:1");
    assert_eq!(a[annotations::SANDBOX_NAMESPACE], "ns");
    assert_eq!(a[annotations::SANDBOX_UID], "u-1");

    // The JSON has the field names runtimes read.
    let v = serde_json::to_value(&spec).unwrap();
    assert_eq!(v["ociVersion"], oci_spec::runtime::VERSION);
    assert_eq!(v["linux"]["cgroupsPath"], "/kubepods/pod1/c1");
    assert!(v.get("hostname").is_none());
    assert_eq!(
        v["process"]["user"]["additionalGids"],
        serde_json::json!([33, 500])
    );

    // ExecSync runs as the container does.
    let exec = process_for_exec(&spec, &["id".to_string()]).unwrap();
    assert_eq!(exec.args().as_deref().unwrap(), ["id"]);
    assert_eq!(exec.user(), p.user());
    assert_eq!(exec.env(), p.env());
}

#[test]
fn resources_and_oom_clamp() {
    let mut f = Fixture::new();
    f.config
        .linux
        .get_or_insert_with(Default::default)
        .resources = Some(LinuxContainerResources {
        cpu_shares: 2,
        memory_limit_in_bytes: 1 << 30,
        oom_score_adj: -997,
        ..Default::default()
    });
    let spec = generate_with(&f.input(), &host()).unwrap();
    let p = spec.process().as_ref().unwrap();
    // min_oom_score_adj is -500 in the fixture.
    assert_eq!(p.oom_score_adj(), Some(-500));
    let r = spec.linux().as_ref().unwrap().resources().as_ref().unwrap();
    assert_eq!(r.cpu().as_ref().unwrap().shares(), Some(2));
    assert_eq!(r.memory().as_ref().unwrap().limit(), Some(1 << 30));
    assert!(r.devices().as_ref().unwrap().len() > 1);
}

#[test]
fn runtime_default_seccomp_follows_caps() {
    let mut f = Fixture::new();
    f.security_context().seccomp = Some(runtime_default());
    let spec = generate_with(&f.input(), &host()).unwrap();
    let sc = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
    assert_eq!(
        action(&sc, "read", [0; 6]).0,
        LinuxSeccompAction::ScmpActAllow
    );
    assert_eq!(
        action(&sc, "mount", [0; 6]).0,
        LinuxSeccompAction::ScmpActErrno
    );

    f.security_context().capabilities = Some(CriCapability {
        add_capabilities: vec!["SYS_ADMIN".into()],
        ..Default::default()
    });
    let spec = generate_with(&f.input(), &host()).unwrap();
    let sc = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
    assert_eq!(
        action(&sc, "mount", [0; 6]).0,
        LinuxSeccompAction::ScmpActAllow
    );
}

#[test]
fn privileged_container() {
    let mut f = Fixture::new();
    f.sandbox_config.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let sc = f.security_context();
    sc.privileged = true;
    sc.seccomp = Some(runtime_default());
    sc.masked_paths = vec!["/proc/kcore".into()];
    let spec = generate_with(&f.input(), &host()).unwrap();
    let linux = spec.linux().as_ref().unwrap();
    assert!(linux.seccomp().is_none());
    assert!(linux.masked_paths().is_none());
    assert!(linux.readonly_paths().is_none());
    let rules = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap();
    assert_eq!(rules.len(), 1);
    assert!(rules[0].allow());
    assert!(!linux.devices().as_ref().unwrap().is_empty());
    assert!(
        !linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Cgroup)
    );
    let caps = spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap();
    assert!(
        caps.bounding()
            .as_ref()
            .unwrap()
            .contains(&Capability::SysAdmin)
    );
    let sys = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/sys"))
        .unwrap();
    assert!(sys.options().as_ref().unwrap().contains(&"rw".to_string()));
}

#[test]
fn sysctls_readonly_rootfs_and_tty() {
    let mut f = Fixture::new();
    f.sandbox_config.linux = Some(LinuxPodSandboxConfig {
        sysctls: [("net.ipv4.ip_forward".to_string(), "1".to_string())].into(),
        ..Default::default()
    });
    f.security_context().readonly_rootfs = true;
    f.security_context().no_new_privs = true;
    f.config.tty = true;
    let spec = generate_with(&f.input(), &host()).unwrap();
    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(linux.sysctl().as_ref().unwrap()["net.ipv4.ip_forward"], "1");
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.terminal(), Some(true));
    assert_eq!(p.no_new_privileges(), Some(true));
    assert!(
        p.env()
            .as_ref()
            .unwrap()
            .contains(&"TERM=xterm".to_string())
    );
}

#[test]
fn errors_classify() {
    let mut f = Fixture::new();
    f.config.command.clear();
    let e = generate_with(&f.input(), &host()).unwrap_err();
    assert!(matches!(e, SpecError::NoCommand));
    assert!(e.is_invalid_argument());

    let f = Fixture::new();
    let mut input = f.input();
    let rel = PathBuf::from("relative/rootfs");
    input.rootfs = &rel;
    let e = generate_with(&input, &host()).unwrap_err();
    assert!(!e.is_invalid_argument());

    let mut f = Fixture::new();
    f.security_context().privileged = true;
    let e = generate_with(&f.input(), &host()).unwrap_err();
    assert!(matches!(e, SpecError::PrivilegedNotAllowed));
}

#[test]
fn host_namespaces_and_shm() {
    let mut f = Fixture::new();
    f.sandbox.netns = None;
    f.sandbox.ipc_ns = None;
    f.sandbox.uts_ns = None;
    f.sandbox.shm = None;
    f.sandbox.pid = PidNs::Host;
    let spec = generate_with(&f.input(), &host()).unwrap();
    let types: Vec<LinuxNamespaceType> = spec
        .linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.typ())
        .collect();
    assert_eq!(
        types,
        [LinuxNamespaceType::Mount, LinuxNamespaceType::Cgroup]
    );
    let shm = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/dev/shm"))
        .unwrap();
    assert_eq!(
        shm.source().as_deref(),
        Some(std::fs::canonicalize("/dev/shm").unwrap().as_path())
    );
}

#[test]
fn json_round_trips() {
    let mut f = Fixture::new();
    f.security_context().seccomp = Some(runtime_default());
    f.config.devices = vec![k8s_cri::v1::Device {
        container_path: "/dev/n".into(),
        host_path: "/dev/null".into(),
        permissions: "rw".into(),
    }];
    f.config
        .linux
        .get_or_insert_with(Default::default)
        .resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 1 << 20,
        ..Default::default()
    });
    let spec = generate_with(&f.input(), &host()).unwrap();
    let json = serde_json::to_string(&spec).unwrap();
    let back: oci_spec::runtime::Spec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, spec);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["linux"]["devices"][0]["type"], "c");
    assert_eq!(v["linux"]["resources"]["devices"][0]["allow"], false);
    assert_eq!(v["linux"]["seccomp"]["defaultErrnoRet"], 1);
}

#[test]
fn a_pod_user_namespace_reaches_the_spec() {
    use k8s_cri::v1::{
        IdMapping, Mount as CriMount, NamespaceMode, NamespaceOption, UserNamespace,
    };
    let map = vec![IdMapping {
        host_id: 200_000,
        container_id: 0,
        length: 65536,
    }];
    let mut f = Fixture::new();
    f.sandbox.user_ns = Some("/run/berth/pods/p/user".into());
    f.sandbox_config.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                userns_options: Some(UserNamespace {
                    mode: NamespaceMode::Pod as i32,
                    uids: map.clone(),
                    gids: map.clone(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let vol = f.mkdir("vol");
    f.config.mounts = vec![
        CriMount {
            container_path: "/idmapped".into(),
            host_path: vol.display().to_string(),
            uid_mappings: map.clone(),
            gid_mappings: map.clone(),
            ..Default::default()
        },
        CriMount {
            container_path: "/plain".into(),
            host_path: vol.display().to_string(),
            ..Default::default()
        },
    ];
    let spec = generate_with(&f.input(), &host()).unwrap();
    let linux = spec.linux().as_ref().unwrap();
    let ns = linux.namespaces().as_ref().unwrap();
    assert_eq!(ns[0].typ(), LinuxNamespaceType::User);
    assert_eq!(
        ns[0].path().as_deref(),
        Some(std::path::Path::new("/run/berth/pods/p/user"))
    );
    let uids = linux.uid_mappings().as_ref().unwrap();
    assert_eq!((uids[0].host_id(), uids[0].size()), (200_000, 65536));
    assert_eq!(linux.gid_mappings(), linux.uid_mappings());
    let mounts = spec.mounts().as_ref().unwrap();
    let find = |d: &str| {
        mounts
            .iter()
            .find(|m| m.destination().to_str() == Some(d))
            .unwrap()
    };
    assert_eq!(find("/idmapped").uid_mappings(), linux.uid_mappings());
    assert!(find("/plain").uid_mappings().is_none());

    // A user outside the mappings is refused before the runtime.
    f.security_context().run_as_user = Some(k8s_cri::v1::Int64Value { value: 70000 });
    let e = generate_with(&f.input(), &host()).unwrap_err();
    assert!(e.is_invalid_argument(), "{e}");
    assert!(e.to_string().contains("uid 70000"), "{e}");
}
