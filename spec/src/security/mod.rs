//! Security: privilege, capabilities, seccomp, AppArmor, masked and
//! read-only paths, no_new_privileges.

pub use crate::caps;
pub(crate) mod seccomp;

use k8s_cri::v1::{
    LinuxContainerSecurityContext, PodSandboxConfig, SecurityProfile, security_profile::ProfileType,
};
use oci_spec::runtime::{LinuxCapabilities, LinuxSeccomp};

use crate::error::SpecError;
use crate::host::Host;

/// containerd's default masked paths (used when the CRI sends none).
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

/// containerd's default read-only paths (used when the CRI sends none).
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The security settings of a container.
#[derive(Debug)]
pub(crate) struct Security {
    pub privileged: bool,
    pub capabilities: LinuxCapabilities,
    pub no_new_privileges: bool,
    pub seccomp: Option<LinuxSeccomp>,
    pub apparmor_profile: Option<String>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
}

/// Whether the container is privileged; an error if its sandbox is not.
pub(crate) fn privileged(
    sc: Option<&LinuxContainerSecurityContext>,
    sandbox: &PodSandboxConfig,
) -> Result<bool, SpecError> {
    let privileged = sc.is_some_and(|sc| sc.privileged);
    let sandbox_privileged = sandbox
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.privileged);
    if privileged && !sandbox_privileged {
        return Err(SpecError::PrivilegedNotAllowed);
    }
    Ok(privileged)
}

fn paths(cri: Option<&Vec<String>>, defaults: &[&str]) -> Vec<String> {
    match cri {
        Some(p) if !p.is_empty() => p.clone(),
        _ => defaults.iter().map(|s| s.to_string()).collect(),
    }
}

/// All security settings of a container.
pub(crate) fn security(
    sc: Option<&LinuxContainerSecurityContext>,
    sandbox: &PodSandboxConfig,
    host: &Host,
) -> Result<Security, SpecError> {
    let privileged = privileged(sc, sandbox)?;
    let caps = caps::resolve(
        sc.and_then(|s| s.capabilities.as_ref()),
        privileged,
        &host.capabilities,
    )?;
    let seccomp = seccomp::seccomp(sc, privileged, &caps.bounding_names(), host)?;
    let apparmor_profile = apparmor(sc, host)?;
    let (masked_paths, readonly_paths) = if privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            paths(sc.map(|s| &s.masked_paths), DEFAULT_MASKED_PATHS),
            paths(sc.map(|s| &s.readonly_paths), DEFAULT_READONLY_PATHS),
        )
    };
    Ok(Security {
        privileged,
        capabilities: caps.to_oci(),
        no_new_privileges: sc.is_some_and(|s| s.no_new_privs),
        seccomp,
        apparmor_profile,
        masked_paths,
        readonly_paths,
    })
}

/// The AppArmor profile: only Localhost profiles are applied (they must be
/// loaded); RuntimeDefault and Unconfined apply none (berth loads no default
/// profile of its own yet).
fn apparmor(
    sc: Option<&LinuxContainerSecurityContext>,
    host: &Host,
) -> Result<Option<String>, SpecError> {
    let Some(sc) = sc else { return Ok(None) };
    let profile = match &sc.apparmor {
        Some(p) => p.clone(),
        None => {
            #[allow(deprecated)]
            let old = sc.apparmor_profile.as_str();
            let t = |t: ProfileType, r: &str| SecurityProfile {
                profile_type: t as i32,
                localhost_ref: r.into(),
            };
            match old {
                "" => return Ok(None),
                "runtime/default" => t(ProfileType::RuntimeDefault, ""),
                "unconfined" => t(ProfileType::Unconfined, ""),
                p => match p.strip_prefix("localhost/") {
                    Some(r) => t(ProfileType::Localhost, r),
                    None => {
                        return Err(SpecError::InvalidSecurityProfile(format!(
                            "unknown apparmor profile {p:?}"
                        )));
                    }
                },
            }
        }
    };
    let typ = ProfileType::try_from(profile.profile_type).map_err(|_| {
        SpecError::InvalidSecurityProfile(format!(
            "unknown apparmor profile type {}",
            profile.profile_type
        ))
    })?;
    if typ != ProfileType::Localhost && !profile.localhost_ref.is_empty() {
        return Err(SpecError::InvalidSecurityProfile(
            "apparmor localhost_ref must only be set for a Localhost profile".into(),
        ));
    }
    if typ != ProfileType::Localhost {
        return Ok(None);
    }
    let name = profile
        .localhost_ref
        .trim_start_matches("localhost/")
        .to_string();
    if name.is_empty() {
        return Err(SpecError::InvalidSecurityProfile(
            "apparmor Localhost profile without a name".into(),
        ));
    }
    if !host.apparmor_enabled {
        return Err(SpecError::ApparmorNotSupported(name));
    }
    let loaded = host
        .apparmor_profiles()
        .map_err(|e| SpecError::io("reading the loaded apparmor profiles", e))?;
    if !loaded.lines().any(|l| l.starts_with(&format!("{name} ("))) {
        return Err(SpecError::ApparmorProfileNotFound(name));
    }
    Ok(Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::host;
    use k8s_cri::v1::{LinuxPodSandboxConfig, LinuxSandboxSecurityContext};

    fn sandbox(privileged: bool) -> PodSandboxConfig {
        PodSandboxConfig {
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn masked_and_readonly_paths() {
        let s = security(None, &sandbox(false), &host()).unwrap();
        assert_eq!(s.masked_paths.len(), DEFAULT_MASKED_PATHS.len());
        assert!(s.masked_paths.contains(&"/proc/kcore".to_string()));
        assert!(s.readonly_paths.contains(&"/proc/sys".to_string()));
        let sc = LinuxContainerSecurityContext {
            masked_paths: vec!["/proc/x".into()],
            readonly_paths: vec!["/proc/y".into()],
            ..Default::default()
        };
        let s = security(Some(&sc), &sandbox(false), &host()).unwrap();
        assert_eq!(s.masked_paths, ["/proc/x"]);
        assert_eq!(s.readonly_paths, ["/proc/y"]);
        let sc = LinuxContainerSecurityContext {
            privileged: true,
            masked_paths: vec!["/proc/x".into()],
            ..Default::default()
        };
        let s = security(Some(&sc), &sandbox(true), &host()).unwrap();
        assert!(s.masked_paths.is_empty());
        assert!(s.readonly_paths.is_empty());
        assert!(s.seccomp.is_none());
    }

    #[test]
    fn privileged_needs_a_privileged_sandbox() {
        let sc = LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        };
        let e = security(Some(&sc), &sandbox(false), &host()).unwrap_err();
        assert!(matches!(e, SpecError::PrivilegedNotAllowed));
        assert!(e.is_invalid_argument());
    }

    #[test]
    fn no_new_privs() {
        let sc = LinuxContainerSecurityContext {
            no_new_privs: true,
            ..Default::default()
        };
        assert!(
            security(Some(&sc), &sandbox(false), &host())
                .unwrap()
                .no_new_privileges
        );
        assert!(
            !security(None, &sandbox(false), &host())
                .unwrap()
                .no_new_privileges
        );
    }

    #[test]
    fn apparmor_profiles() {
        let lh = |r: &str| LinuxContainerSecurityContext {
            apparmor: Some(SecurityProfile {
                profile_type: ProfileType::Localhost as i32,
                localhost_ref: r.into(),
            }),
            ..Default::default()
        };
        let mut h = host();
        h.apparmor_enabled = true;
        h.apparmor_profiles = Some("k8s-nginx (enforce)\ndocker-default (enforce)\n".into());
        assert_eq!(
            apparmor(Some(&lh("k8s-nginx")), &h).unwrap().as_deref(),
            Some("k8s-nginx")
        );
        assert_eq!(
            apparmor(Some(&lh("localhost/k8s-nginx")), &h)
                .unwrap()
                .as_deref(),
            Some("k8s-nginx")
        );
        let e = apparmor(Some(&lh("k8s")), &h).unwrap_err();
        assert!(matches!(e, SpecError::ApparmorProfileNotFound(_)), "{e}");
        h.apparmor_enabled = false;
        assert!(
            apparmor(Some(&lh("k8s-nginx")), &h)
                .unwrap_err()
                .is_invalid_argument()
        );
        let rd = LinuxContainerSecurityContext {
            apparmor: Some(SecurityProfile::default()),
            ..Default::default()
        };
        assert!(apparmor(Some(&rd), &h).unwrap().is_none());
        #[allow(deprecated)]
        let old = LinuxContainerSecurityContext {
            apparmor_profile: "localhost/k8s-nginx".into(),
            ..Default::default()
        };
        h.apparmor_enabled = true;
        assert_eq!(
            apparmor(Some(&old), &h).unwrap().as_deref(),
            Some("k8s-nginx")
        );
    }
}
