//! crictl-style container configs (`container-config.json`, or the same in
//! YAML; chosen by content) into the CRI `ContainerConfig`, and the
//! `CreateContainerRequest` that pairs one with its pod's config.
//!
//! Unknown fields are errors, so a typo does not silently drop a setting.

use std::collections::HashMap;
use std::path::Path;

use k8s_cri::v1 as cri;
use serde::Deserialize;

/// The container config fields users write (crictl's names).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerConfigFile {
    pub metadata: Metadata,
    pub image: Image,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub envs: Vec<KeyValue>,
    #[serde(default)]
    pub labels: HashMap<String, String>,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Relative to the pod's `log_directory`.
    #[serde(default)]
    pub log_path: String,
    #[serde(default)]
    pub stdin: bool,
    #[serde(default)]
    pub stdin_once: bool,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub linux: Option<Linux>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub attempt: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub image: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyValue {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// An enum written by name (`PROPAGATION_PRIVATE`) or by number, as the
/// protobuf JSON mapping allows.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NameOrNumber {
    Number(i64),
    Name(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    pub container_path: String,
    #[serde(default)]
    pub host_path: String,
    #[serde(default)]
    pub readonly: bool,
    #[serde(default)]
    pub propagation: Option<NameOrNumber>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub container_path: String,
    pub host_path: String,
    #[serde(default)]
    pub permissions: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Linux {
    #[serde(default)]
    pub resources: Option<Resources>,
    #[serde(default)]
    pub security_context: Option<SecurityContext>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default)]
    pub cpu_period: i64,
    #[serde(default)]
    pub cpu_quota: i64,
    #[serde(default)]
    pub cpu_shares: i64,
    #[serde(default)]
    pub memory_limit_in_bytes: i64,
    #[serde(default)]
    pub oom_score_adj: i64,
    #[serde(default)]
    pub cpuset_cpus: String,
    #[serde(default)]
    pub cpuset_mems: String,
    #[serde(default)]
    pub memory_swap_limit_in_bytes: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityContext {
    #[serde(default)]
    pub capabilities: Option<Capabilities>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub readonly_rootfs: bool,
    #[serde(default)]
    pub run_as_user: Option<Int64Value>,
    #[serde(default)]
    pub run_as_group: Option<Int64Value>,
    #[serde(default)]
    pub run_as_username: String,
    #[serde(default)]
    pub supplemental_groups: Vec<i64>,
    #[serde(default)]
    pub no_new_privs: bool,
    #[serde(default)]
    pub seccomp: Option<SecurityProfile>,
    #[serde(default)]
    pub masked_paths: Vec<String>,
    #[serde(default)]
    pub readonly_paths: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    #[serde(default)]
    pub add_capabilities: Vec<String>,
    #[serde(default)]
    pub drop_capabilities: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Int64Value {
    pub value: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityProfile {
    #[serde(default)]
    pub profile_type: Option<NameOrNumber>,
    #[serde(default)]
    pub localhost_ref: String,
}

/// Parses a JSON (text starting with `{`) or YAML container config.
pub fn parse(text: &str) -> Result<ContainerConfigFile, String> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| e.to_string())
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
    }
}

/// Reads a container config file into the CRI message.
pub fn load(path: &Path) -> Result<cri::ContainerConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text)
        .and_then(to_cri)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn propagation(v: &Option<NameOrNumber>) -> Result<i32, String> {
    use cri::MountPropagation as P;
    Ok(match v {
        None => P::PropagationPrivate,
        Some(NameOrNumber::Number(0)) => P::PropagationPrivate,
        Some(NameOrNumber::Number(1)) => P::PropagationHostToContainer,
        Some(NameOrNumber::Number(2)) => P::PropagationBidirectional,
        Some(NameOrNumber::Name(n)) => match n.to_ascii_uppercase().as_str() {
            "PROPAGATION_PRIVATE" => P::PropagationPrivate,
            "PROPAGATION_HOST_TO_CONTAINER" => P::PropagationHostToContainer,
            "PROPAGATION_BIDIRECTIONAL" => P::PropagationBidirectional,
            _ => return Err(bad_propagation(n)),
        },
        Some(NameOrNumber::Number(n)) => return Err(bad_propagation(n)),
    } as i32)
}

fn bad_propagation(v: impl std::fmt::Debug) -> String {
    format!(
        "mount propagation {v:?}: use PROPAGATION_PRIVATE, PROPAGATION_HOST_TO_CONTAINER or PROPAGATION_BIDIRECTIONAL"
    )
}

fn seccomp(p: SecurityProfile) -> Result<cri::SecurityProfile, String> {
    use cri::security_profile::ProfileType as T;
    let bad = |v: &dyn std::fmt::Debug| {
        format!("seccomp profile_type {v:?}: use RuntimeDefault, Unconfined or Localhost")
    };
    let t = match &p.profile_type {
        None | Some(NameOrNumber::Number(0)) => T::RuntimeDefault,
        Some(NameOrNumber::Number(1)) => T::Unconfined,
        Some(NameOrNumber::Number(2)) => T::Localhost,
        Some(NameOrNumber::Number(n)) => return Err(bad(n)),
        Some(NameOrNumber::Name(n)) => match n.to_ascii_lowercase().as_str() {
            "runtimedefault" => T::RuntimeDefault,
            "unconfined" => T::Unconfined,
            "localhost" => T::Localhost,
            _ => return Err(bad(n)),
        },
    };
    if t == T::Localhost && p.localhost_ref.is_empty() {
        return Err(
            "seccomp profile_type Localhost needs localhost_ref (the profile's path)".into(),
        );
    }
    if t != T::Localhost && !p.localhost_ref.is_empty() {
        return Err("seccomp localhost_ref is only for profile_type Localhost".into());
    }
    Ok(cri::SecurityProfile {
        profile_type: t as i32,
        localhost_ref: p.localhost_ref,
    })
}

/// The CRI message for a parsed config; errors name the bad field.
pub fn to_cri(c: ContainerConfigFile) -> Result<cri::ContainerConfig, String> {
    if c.metadata.name.is_empty() {
        return Err("metadata.name is required".into());
    }
    if c.image.image.is_empty() {
        return Err("image.image is required".into());
    }
    let mounts = c
        .mounts
        .into_iter()
        .map(|m| {
            Ok(cri::Mount {
                propagation: propagation(&m.propagation)?,
                container_path: m.container_path,
                host_path: m.host_path,
                readonly: m.readonly,
                ..Default::default()
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let linux = c.linux.unwrap_or_default();
    let resources = linux.resources.map(|r| cri::LinuxContainerResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus,
        cpuset_mems: r.cpuset_mems,
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
        ..Default::default()
    });
    let s = linux.security_context.unwrap_or_default();
    let security_context = cri::LinuxContainerSecurityContext {
        capabilities: s.capabilities.map(|c| cri::Capability {
            add_capabilities: c.add_capabilities,
            drop_capabilities: c.drop_capabilities,
            ..Default::default()
        }),
        privileged: s.privileged,
        readonly_rootfs: s.readonly_rootfs,
        run_as_user: s.run_as_user.map(|v| cri::Int64Value { value: v.value }),
        run_as_group: s.run_as_group.map(|v| cri::Int64Value { value: v.value }),
        run_as_username: s.run_as_username,
        supplemental_groups: s.supplemental_groups,
        no_new_privs: s.no_new_privs,
        seccomp: s.seccomp.map(seccomp).transpose()?,
        masked_paths: s.masked_paths,
        readonly_paths: s.readonly_paths,
        ..Default::default()
    };
    Ok(cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.metadata.name,
            attempt: c.metadata.attempt,
        }),
        image: Some(cri::ImageSpec {
            image: c.image.image,
            ..Default::default()
        }),
        command: c.command,
        args: c.args,
        working_dir: c.working_dir,
        envs: c
            .envs
            .into_iter()
            .map(|e| cri::KeyValue {
                key: e.key,
                value: e.value,
            })
            .collect(),
        mounts,
        devices: c
            .devices
            .into_iter()
            .map(|d| cri::Device {
                container_path: d.container_path,
                host_path: d.host_path,
                permissions: d.permissions,
            })
            .collect(),
        labels: c.labels,
        annotations: c.annotations,
        log_path: c.log_path,
        stdin: c.stdin,
        stdin_once: c.stdin_once,
        tty: c.tty,
        linux: Some(cri::LinuxContainerConfig {
            resources,
            security_context: Some(security_context),
        }),
        ..Default::default()
    })
}

/// The CreateContainer request for `config` in pod `pod_id`. Like kubelet,
/// the container gets its pod's namespace options (so a pod config's
/// `pid: CONTAINER` or `network: NODE` holds for its containers too).
pub fn create_request(
    pod_id: &str,
    mut config: cri::ContainerConfig,
    sandbox: cri::PodSandboxConfig,
) -> cri::CreateContainerRequest {
    let ns = sandbox
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone());
    let linux = config.linux.get_or_insert_with(Default::default);
    let sc = linux.security_context.get_or_insert_with(Default::default);
    if ns.is_some() {
        sc.namespace_options = ns;
    }
    cri::CreateContainerRequest {
        pod_sandbox_id: pod_id.to_owned(),
        config: Some(config),
        sandbox_config: Some(sandbox),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL_YAML: &str = r#"
metadata: {name: web, attempt: 2}
image: {image: "example.com/web:1"}
command: [/bin/web]
args: [--port, "80"]
working_dir: /srv
envs:
  - {key: A, value: "1"}
  - {key: EMPTY}
labels: {tier: front}
annotations: {note: hi}
mounts:
  - {container_path: /data, host_path: /srv/data, readonly: true, propagation: PROPAGATION_HOST_TO_CONTAINER}
  - {container_path: /shared, host_path: /srv/shared, propagation: 2}
  - {container_path: /tmp/x, host_path: /tmp/x}
devices:
  - {container_path: /dev/fuse, host_path: /dev/fuse, permissions: rwm}
log_path: web/0.log
stdin: true
stdin_once: true
tty: true
linux:
  resources:
    cpu_period: 100000
    cpu_quota: 50000
    cpu_shares: 512
    memory_limit_in_bytes: 67108864
    oom_score_adj: 500
    cpuset_cpus: "0-1"
    cpuset_mems: "0"
    memory_swap_limit_in_bytes: 134217728
  security_context:
    capabilities: {add_capabilities: [NET_ADMIN], drop_capabilities: [ALL]}
    privileged: true
    readonly_rootfs: true
    run_as_user: {value: 1000}
    run_as_group: {value: 2000}
    run_as_username: web
    supplemental_groups: [3000, 3001]
    no_new_privs: true
    seccomp: {profile_type: Localhost, localhost_ref: /etc/seccomp/web.json}
    masked_paths: [/proc/kcore]
    readonly_paths: [/proc/sys]
"#;

    #[test]
    fn every_field_reaches_the_cri_message() {
        let c = to_cri(parse(FULL_YAML).unwrap()).unwrap();
        let m = c.metadata.unwrap();
        assert_eq!((m.name.as_str(), m.attempt), ("web", 2));
        assert_eq!(c.image.unwrap().image, "example.com/web:1");
        assert_eq!(c.command, ["/bin/web"]);
        assert_eq!(c.args, ["--port", "80"]);
        assert_eq!(c.working_dir, "/srv");
        assert_eq!(
            c.envs
                .iter()
                .map(|e| (e.key.as_str(), e.value.as_str()))
                .collect::<Vec<_>>(),
            [("A", "1"), ("EMPTY", "")]
        );
        assert_eq!(c.labels["tier"], "front");
        assert_eq!(c.annotations["note"], "hi");
        use cri::MountPropagation as P;
        assert_eq!(c.mounts.len(), 3);
        assert_eq!(c.mounts[0].container_path, "/data");
        assert_eq!(c.mounts[0].host_path, "/srv/data");
        assert!(c.mounts[0].readonly);
        assert_eq!(
            c.mounts[0].propagation,
            P::PropagationHostToContainer as i32
        );
        assert_eq!(c.mounts[1].propagation, P::PropagationBidirectional as i32);
        assert!(!c.mounts[1].readonly);
        assert_eq!(c.mounts[2].propagation, P::PropagationPrivate as i32);
        assert_eq!(
            (
                c.devices[0].container_path.as_str(),
                c.devices[0].host_path.as_str(),
                c.devices[0].permissions.as_str()
            ),
            ("/dev/fuse", "/dev/fuse", "rwm")
        );
        assert_eq!(c.log_path, "web/0.log");
        assert!(c.stdin && c.stdin_once && c.tty);
        let linux = c.linux.unwrap();
        let r = linux.resources.unwrap();
        assert_eq!(
            (r.cpu_period, r.cpu_quota, r.cpu_shares),
            (100000, 50000, 512)
        );
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
        assert_eq!(r.oom_score_adj, 500);
        assert_eq!(
            (r.cpuset_cpus.as_str(), r.cpuset_mems.as_str()),
            ("0-1", "0")
        );
        assert_eq!(r.memory_swap_limit_in_bytes, 128 << 20);
        let s = linux.security_context.unwrap();
        let caps = s.capabilities.unwrap();
        assert_eq!(caps.add_capabilities, ["NET_ADMIN"]);
        assert_eq!(caps.drop_capabilities, ["ALL"]);
        assert!(s.privileged && s.readonly_rootfs && s.no_new_privs);
        assert_eq!(s.run_as_user.unwrap().value, 1000);
        assert_eq!(s.run_as_group.unwrap().value, 2000);
        assert_eq!(s.run_as_username, "web");
        assert_eq!(s.supplemental_groups, [3000, 3001]);
        let sc = s.seccomp.unwrap();
        assert_eq!(
            sc.profile_type,
            cri::security_profile::ProfileType::Localhost as i32
        );
        assert_eq!(sc.localhost_ref, "/etc/seccomp/web.json");
        assert_eq!(s.masked_paths, ["/proc/kcore"]);
        assert_eq!(s.readonly_paths, ["/proc/sys"]);
        assert!(s.namespace_options.is_none());
    }

    #[test]
    fn json_configs_load_like_crictl_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(
            &path,
            r#"{
              "metadata": {"name": "busybox"},
              "image": {"image": "busybox:latest"},
              "command": ["top"],
              "envs": [{"key": "K", "value": "V"}],
              "mounts": [{"container_path": "/m", "host_path": "/h", "propagation": "PROPAGATION_BIDIRECTIONAL"}],
              "log_path": "busybox.0.log",
              "linux": {"security_context": {"seccomp": {"profile_type": "Unconfined"}}}
            }"#,
        )
        .unwrap();
        let c = load(&path).unwrap();
        assert_eq!(c.metadata.unwrap().name, "busybox");
        assert_eq!(c.image.unwrap().image, "busybox:latest");
        assert_eq!(c.command, ["top"]);
        assert_eq!(c.envs[0].value, "V");
        assert_eq!(
            c.mounts[0].propagation,
            cri::MountPropagation::PropagationBidirectional as i32
        );
        assert_eq!(c.log_path, "busybox.0.log");
        let linux = c.linux.unwrap();
        assert!(linux.resources.is_none());
        assert_eq!(
            linux
                .security_context
                .unwrap()
                .seccomp
                .unwrap()
                .profile_type,
            cri::security_profile::ProfileType::Unconfined as i32
        );
    }

    #[test]
    fn the_demo_container_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo/container.yaml");
        let c = load(&path).unwrap();
        assert_eq!(c.metadata.unwrap().name, "httpd");
        assert_eq!(c.image.unwrap().image, "berth.local/demo/busybox:latest");
        assert_eq!(c.command[0], "sh");
        assert!(c.command[2].contains("exec httpd -f"));
        assert_eq!(c.log_path, "httpd.log");
    }

    #[test]
    fn unknown_fields_and_bad_values_are_errors() {
        let bad = |text: &str| parse(text).and_then(to_cri).unwrap_err();
        let e = bad("metadata: {name: a}\nimage: {image: b}\ncomand: [x]\n");
        assert!(e.contains("comand"), "{e}");
        let e = bad(
            r#"{"metadata":{"name":"a"},"image":{"image":"b"},"linux":{"security_context":{"privilged":true}}}"#,
        );
        assert!(e.contains("privilged"), "{e}");
        let e = bad(
            "metadata: {name: a}\nimage: {image: b}\nmounts: [{container_path: /a, propagation: SHARED}]\n",
        );
        assert!(e.contains("SHARED"), "{e}");
        let e = bad(
            "metadata: {name: a}\nimage: {image: b}\nmounts: [{container_path: /a, propagation: 7}]\n",
        );
        assert!(e.contains("7"), "{e}");
        let e = bad(
            "metadata: {name: a}\nimage: {image: b}\nlinux: {security_context: {seccomp: {profile_type: Localhost}}}\n",
        );
        assert!(e.contains("localhost_ref"), "{e}");
        let e = bad(
            "metadata: {name: a}\nimage: {image: b}\nlinux: {security_context: {seccomp: {profile_type: Strict}}}\n",
        );
        assert!(e.contains("Strict"), "{e}");
        assert!(bad("metadata: {name: a}\n").contains("image"));
        assert!(bad("metadata: {name: ''}\nimage: {image: b}\n").contains("metadata.name"));
        assert!(bad("metadata: {name: a}\nimage: {image: ''}\n").contains("image.image"));
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "metadata: {name: a}\nimage: {image: b}\nbogus: 1\n").unwrap();
        let e = load(&path).unwrap_err();
        assert!(
            e.starts_with(&path.display().to_string()) && e.contains("bogus"),
            "{e}"
        );
        assert!(load(&dir.path().join("missing.yaml")).is_err());
    }

    #[test]
    fn containers_get_their_pods_namespace_options() {
        let config = to_cri(parse("metadata: {name: a}\nimage: {image: b}\n").unwrap()).unwrap();
        let ns = cri::NamespaceOption {
            network: cri::NamespaceMode::Node as i32,
            pid: cri::NamespaceMode::Container as i32,
            ipc: cri::NamespaceMode::Pod as i32,
            ..Default::default()
        };
        let sandbox = cri::PodSandboxConfig {
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(ns.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = create_request("pod1", config, sandbox.clone());
        assert_eq!(r.pod_sandbox_id, "pod1");
        assert_eq!(r.sandbox_config, Some(sandbox));
        let got = r
            .config
            .unwrap()
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(got, ns);
    }
}
