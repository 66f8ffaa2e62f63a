//! CRI `ContainerConfig` → OCI runtime spec, with the rules kubelet expects
//! (containerd 1.7's CRI plugin is the reference).
//!
//! [`generate`] builds the `config.json` of a container; [`linux_resources`]
//! maps CRI resources (also for UpdateContainerResources); [`stop_signal`]
//! reads the image's StopSignal; [`process_for_exec`] derives the process of
//! an ExecSync from the container's spec.
//!
//! The rules live by concern: [`process`](mod@process) (args, env, cwd),
//! `user` (uid/gid/groups from the image's /etc files, read safely by
//! `rootfs`), `mounts`, `devices`, [`security`] (privilege, capabilities,
//! seccomp, AppArmor, masked paths), `resources`, `namespaces`.
//!
//! Before calling [`generate`], the caller must have: the container rootfs
//! mounted at `rootfs` (absolute), every CRI mount `host_path` and device
//! present on the host, and the pod's hosts and resolv.conf files (and shm
//! directory) in place; a missing hostname file is skipped.

pub mod caps;
mod devices;
mod error;
mod host;
mod mounts;
mod namespaces;
pub mod process;
mod resources;
pub mod rlimits;
mod rootfs;
pub mod security;
mod signal;
mod user;
mod userns;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Linux, LinuxResources, Process, Root, Spec, User};

pub use error::SpecError;
pub use host::Host;
pub use process::process_for_exec;
pub use resources::{linux_resources, linux_resources_on};
pub use signal::{parse_signal, stop_signal};

/// Annotation keys containerd's CRI plugin sets on container specs.
pub mod annotations {
    /// "container" for application containers.
    pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    pub const CONTAINER_TYPE_CONTAINER: &str = "container";
    pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
    pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
}

/// Everything [`generate`] needs for one container.
#[derive(Debug)]
pub struct SpecInput<'a> {
    /// The container id.
    pub id: &'a str,
    pub config: &'a k8s_cri::v1::ContainerConfig,
    pub sandbox_config: &'a k8s_cri::v1::PodSandboxConfig,
    /// The image's config blob (user, env, entrypoint, cmd, working dir).
    pub image: &'a oci_spec::image::ImageConfiguration,
    /// The container's mounted rootfs (absolute); its /etc/passwd and
    /// /etc/group are read, safely, for user resolution.
    pub rootfs: &'a Path,
    pub sandbox: &'a Sandbox,
    /// Put verbatim in linux.cgroupsPath.
    pub cgroups_path: String,
    /// berthd's own oom_score_adj: the container's is never set below it.
    pub min_oom_score_adj: i32,
    /// Resource limits of the container's processes (`[runtime]
    /// default_rlimits`); empty: none set, inherited from the shim.
    pub rlimits: &'a [oci_spec::runtime::PosixRlimit],
    /// `[runtime] default_pids_limit`: the container's pids limit, as the
    /// CRI sets none; 0: none.
    pub pids_limit: i64,
}

/// The pod sandbox as the container sees it.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// The pod's network namespace; `None`: the host's.
    pub netns: Option<PathBuf>,
    /// The pod's IPC namespace; `None`: the host's.
    pub ipc_ns: Option<PathBuf>,
    /// The pod's UTS namespace; `None`: the host's.
    pub uts_ns: Option<PathBuf>,
    /// The pod's user namespace (pinned), when it has one of its own; its
    /// mappings are read from the pod's stored config.
    pub user_ns: Option<PathBuf>,
    pub pid: PidNs,
    /// The pod's hostname, for the HOSTNAME variable.
    pub hostname: String,
    /// Bind-mounted at /etc/hostname (skipped when the file is missing).
    pub hostname_file: Option<PathBuf>,
    /// Bind-mounted at /etc/hosts.
    pub hosts_file: Option<PathBuf>,
    /// Bind-mounted at /etc/resolv.conf.
    pub resolv_conf: Option<PathBuf>,
    /// The pod's /dev/shm directory; `None` (host IPC): the host's /dev/shm.
    pub shm: Option<PathBuf>,
}

/// The PID namespace of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidNs {
    /// A new PID namespace of its own.
    Container,
    /// Join the pod's PID namespace at this path.
    Pod(PathBuf),
    /// The host's PID namespace.
    Host,
}

/// The OCI spec of a container, on the running host (probed once).
pub fn generate(input: &SpecInput) -> Result<Spec, SpecError> {
    generate_with(input, Host::cached())
}

/// [`generate`] for a given host description.
pub fn generate_with(input: &SpecInput, host: &Host) -> Result<Spec, SpecError> {
    if !input.rootfs.is_absolute() {
        return Err(SpecError::RootfsNotAbsolute(input.rootfs.into()));
    }
    let config = input.config;
    let linux_cfg = config.linux.as_ref();
    let sc = linux_cfg.and_then(|l| l.security_context.as_ref());
    let image = input.image.config().as_ref();

    let sec = security::security(sc, input.sandbox_config, host)?;

    // The process.
    let args = process::args(config, image)?;
    let hostname = if input.sandbox.hostname.is_empty() {
        // containerd: the node's hostname (host-network pods).
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default()
    } else {
        input.sandbox.hostname.clone()
    };
    let env = process::env(config, image, &hostname);
    let cwd = process::cwd(config, image)?;
    let image_user = image.and_then(|i| i.user().as_deref());
    let ident = user::resolve(sc, image_user, input.rootfs)?;
    let userns = userns::userns(input.sandbox, sc, input.sandbox_config)?;
    if let Some(u) = &userns {
        u.check_ids(ident.uid, ident.gid, &ident.additional_gids)?;
    }
    let mut u = User::default();
    u.set_uid(ident.uid);
    u.set_gid(ident.gid);
    u.set_additional_gids(Some(ident.additional_gids));
    let mut proc = Process::default();
    proc.set_terminal(Some(config.tty));
    proc.set_console_size(None);
    proc.set_user(u);
    proc.set_args(Some(args));
    proc.set_command_line(None);
    proc.set_env(Some(env));
    proc.set_cwd(PathBuf::from(cwd));
    proc.set_capabilities(Some(sec.capabilities.clone()));
    // The CRI has no rlimits; without configured ones berth does as
    // containerd's CRI does (none set: the process inherits them).
    proc.set_rlimits((!input.rlimits.is_empty()).then(|| input.rlimits.to_vec()));
    proc.set_no_new_privileges(Some(sec.no_new_privileges));
    proc.set_apparmor_profile(sec.apparmor_profile.clone());
    proc.set_selinux_label(None);
    let cri_resources = linux_cfg.and_then(|l| l.resources.as_ref());
    proc.set_oom_score_adj(
        cri_resources
            .map(|r| resources::oom_score_adj(r, input.min_oom_score_adj))
            .transpose()?,
    );

    // Mounts and devices.
    let mounts = mounts::mounts(input, sec.privileged, host, userns.as_ref())?;
    let devs = devices::devices(config, sec.privileged, host)?;

    // Linux.
    let mut res = match cri_resources {
        Some(r) => resources::linux_resources_on(r, host)?,
        None => LinuxResources::default(),
    };
    res.set_devices(Some(devs.cgroup));
    if input.pids_limit > 0 && res.pids().is_none() {
        let mut pids = oci_spec::runtime::LinuxPids::default();
        pids.set_limit(input.pids_limit);
        res.set_pids(Some(pids));
    }
    let namespaces =
        namespaces::namespaces(input.sandbox, userns.as_ref(), sec.privileged, host.cgroup2);
    let sysctls = input
        .sandbox_config
        .linux
        .as_ref()
        .map(|l| l.sysctls.clone())
        .filter(|s| !s.is_empty());

    let mut linux = Linux::default();
    linux.set_uid_mappings(userns.as_ref().map(|u| u.uids.clone()));
    linux.set_gid_mappings(userns.as_ref().map(|u| u.gids.clone()));
    linux.set_sysctl(sysctls);
    linux.set_resources(Some(res));
    linux.set_cgroups_path(Some(PathBuf::from(&input.cgroups_path)));
    linux.set_namespaces(Some(namespaces));
    linux.set_devices((!devs.devices.is_empty()).then_some(devs.devices));
    linux.set_seccomp(sec.seccomp);
    linux.set_rootfs_propagation(mounts.rootfs_propagation);
    linux.set_masked_paths((!sec.masked_paths.is_empty()).then_some(sec.masked_paths));
    linux.set_readonly_paths((!sec.readonly_paths.is_empty()).then_some(sec.readonly_paths));
    linux.set_mount_label(None);

    let mut root = Root::default();
    root.set_path(input.rootfs.to_path_buf());
    root.set_readonly(Some(sc.is_some_and(|s| s.readonly_rootfs)));

    let mut spec = Spec::default();
    spec.set_version(oci_spec::runtime::VERSION.to_string());
    spec.set_root(Some(root));
    spec.set_mounts(Some(mounts.mounts));
    spec.set_process(Some(proc));
    spec.set_hostname(None);
    spec.set_domainname(None);
    spec.set_hooks(None);
    spec.set_annotations(Some(annotations_for(input)));
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// The CRI container annotations, plus containerd's own keys.
fn annotations_for(input: &SpecInput) -> HashMap<String, String> {
    use annotations::*;
    let mut a = input.config.annotations.clone();
    let mut set = |k: &str, v: &str| {
        a.insert(k.to_string(), v.to_string());
    };
    set(CONTAINER_TYPE, CONTAINER_TYPE_CONTAINER);
    if let Some(m) = &input.config.metadata {
        set(CONTAINER_NAME, &m.name);
    }
    if let Some(i) = &input.config.image {
        set(IMAGE_NAME, &i.image);
    }
    if let Some(m) = &input.sandbox_config.metadata {
        set(SANDBOX_NAME, &m.name);
        set(SANDBOX_NAMESPACE, &m.namespace);
        set(SANDBOX_UID, &m.uid);
    }
    a
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Fixtures shared by the unit tests.
    use super::*;
    use k8s_cri::v1::{
        ContainerConfig, LinuxContainerConfig, LinuxContainerSecurityContext, PodSandboxConfig,
    };
    use oci_spec::image::ImageConfiguration;

    /// A deterministic host: cgroup v2, swap accounted, every capability,
    /// no AppArmor, kernel 6.1, every path shared.
    pub(crate) fn host() -> Host {
        Host {
            cgroup2: true,
            swap_available: true,
            capabilities: caps::all_known(),
            apparmor_enabled: false,
            kernel: (6, 1),
            dev_dir: PathBuf::from("/dev"),
            mountinfo: Some("1 0 0:1 / / rw shared:1 - ext4 /dev/sda rw\n".into()),
            apparmor_profiles: Some(String::new()),
        }
    }

    /// A temp dir with a rootfs and the pod files, and configs to edit.
    pub(crate) struct Fixture {
        pub dir: tempfile::TempDir,
        pub rootfs: PathBuf,
        pub config: ContainerConfig,
        pub sandbox_config: PodSandboxConfig,
        pub image: ImageConfiguration,
        pub sandbox: Sandbox,
        pub rlimits: Vec<oci_spec::runtime::PosixRlimit>,
        pub pids_limit: i64,
    }

    impl Fixture {
        pub(crate) fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let rootfs = dir.path().join("rootfs");
            std::fs::create_dir_all(rootfs.join("etc")).unwrap();
            for f in ["hostname", "hosts", "resolv.conf"] {
                std::fs::write(dir.path().join(f), "x\n").unwrap();
            }
            std::fs::create_dir(dir.path().join("shm")).unwrap();
            let sandbox = Sandbox {
                netns: Some("/run/berth/netns/pod".into()),
                ipc_ns: Some("/run/berth/ipcns/pod".into()),
                uts_ns: Some("/run/berth/utsns/pod".into()),
                user_ns: None,
                pid: PidNs::Container,
                hostname: "pod-host".into(),
                hostname_file: Some(dir.path().join("hostname")),
                hosts_file: Some(dir.path().join("hosts")),
                resolv_conf: Some(dir.path().join("resolv.conf")),
                shm: Some(dir.path().join("shm")),
            };
            Fixture {
                rootfs,
                config: ContainerConfig {
                    command: vec!["/bin/app".into()],
                    ..Default::default()
                },
                sandbox_config: PodSandboxConfig::default(),
                image: ImageConfiguration::default(),
                sandbox,
                rlimits: Vec::new(),
                pids_limit: 0,
                dir,
            }
        }

        pub(crate) fn input(&self) -> SpecInput<'_> {
            SpecInput {
                id: "c1",
                config: &self.config,
                sandbox_config: &self.sandbox_config,
                image: &self.image,
                rootfs: &self.rootfs,
                sandbox: &self.sandbox,
                cgroups_path: "/kubepods/pod1/c1".into(),
                min_oom_score_adj: -500,
                rlimits: &self.rlimits,
                pids_limit: self.pids_limit,
            }
        }

        pub(crate) fn security_context(&mut self) -> &mut LinuxContainerSecurityContext {
            self.config
                .linux
                .get_or_insert_with(LinuxContainerConfig::default)
                .security_context
                .get_or_insert_with(Default::default)
        }

        pub(crate) fn mkdir(&self, name: &str) -> PathBuf {
            let p = self.dir.path().join(name);
            std::fs::create_dir_all(&p).unwrap();
            p
        }

        pub(crate) fn file(&self, name: &str) -> PathBuf {
            let p = self.dir.path().join(name);
            std::fs::write(&p, "data\n").unwrap();
            p
        }
    }
}

#[cfg(test)]
mod tests;
