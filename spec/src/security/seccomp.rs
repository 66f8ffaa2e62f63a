//! Seccomp: the runtime default profile and Localhost profiles.
//!
//! Profiles are read in the Docker/containerd format (a superset of the OCI
//! `LinuxSeccomp` JSON): `archMap` picks the native architecture and its
//! sub-architectures, `name`/`names` list syscalls, and `includes`/`excludes`
//! make a rule depend on capabilities (of the bounding set), architectures
//! and the kernel version, as moby's `setupSeccomp` does. The runtime default
//! is containerd 1.7's profile, kept as data in `seccomp_default.json`.

use std::path::{Path, PathBuf};

use k8s_cri::v1::{LinuxContainerSecurityContext, SecurityProfile, security_profile::ProfileType};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSyscall,
};
use serde::Deserialize;

use crate::error::SpecError;
use crate::host::Host;

/// containerd 1.7's default profile, in the Docker format.
const DEFAULT_PROFILE: &str = include_str!("seccomp_default.json");

/// Cap on the size of a Localhost profile file.
const MAX_PROFILE_BYTES: usize = 4 << 20;

/// The libseccomp/Go name of the architecture berth runs on, as profile
/// `includes.arches` use it.
pub(crate) const NATIVE_ARCH: &str = if cfg!(target_arch = "x86_64") {
    "amd64"
} else if cfg!(target_arch = "aarch64") {
    "arm64"
} else if cfg!(target_arch = "x86") {
    "x86"
} else if cfg!(target_arch = "arm") {
    "arm"
} else if cfg!(target_arch = "s390x") {
    "s390x"
} else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
    "ppc64le"
} else if cfg!(target_arch = "powerpc64") {
    "ppc64"
} else if cfg!(target_arch = "riscv64") {
    "riscv64"
} else if cfg!(target_arch = "loongarch64") {
    "loong64"
} else if cfg!(all(target_arch = "mips64", target_endian = "little")) {
    "mipsel64"
} else if cfg!(target_arch = "mips64") {
    "mips64"
} else {
    "unknown"
};

/// The seccomp architecture matching [`NATIVE_ARCH`] in an `archMap`.
fn native_seccomp_arch(arch: &str) -> Option<Arch> {
    Some(match arch {
        "amd64" => Arch::ScmpArchX86_64,
        "arm64" => Arch::ScmpArchAarch64,
        "x86" => Arch::ScmpArchX86,
        "arm" => Arch::ScmpArchArm,
        "s390x" => Arch::ScmpArchS390x,
        "ppc64le" => Arch::ScmpArchPpc64le,
        "ppc64" => Arch::ScmpArchPpc64,
        "riscv64" => Arch::ScmpArchRiscv64,
        "loong64" => Arch::ScmpArchLoongarch64,
        "mipsel64" => Arch::ScmpArchMipsel64,
        "mips64" => Arch::ScmpArchMips64,
        _ => return None,
    })
}

/// A profile in the Docker format (OCI profiles parse as well).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: Option<LinuxSeccompAction>,
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<Arch>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    flags: Vec<LinuxSeccompFilterFlag>,
    listener_path: Option<PathBuf>,
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Vec<Arch>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    name: String,
    #[serde(default)]
    names: Vec<String>,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<LinuxSeccompArg>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    min_kernel: Option<String>,
}

/// What a profile's conditions are evaluated against.
pub(crate) struct Context<'a> {
    /// Bounding capabilities, "CAP_SYS_ADMIN" style.
    pub caps: &'a [String],
    pub arch: &'a str,
    pub kernel: (u32, u32),
}

fn cap_key(c: &str) -> String {
    let u = c.trim().to_ascii_uppercase();
    match u.strip_prefix("CAP_") {
        Some(b) => b.to_string(),
        None => u,
    }
}

fn kernel_at_least(min: &str, kernel: (u32, u32)) -> Result<bool, String> {
    let want = crate::host::parse_kernel_version(min)
        .ok_or_else(|| format!("invalid minKernel {min:?}"))?;
    Ok(kernel >= want)
}

fn convert(p: Profile, ctx: &Context) -> Result<LinuxSeccomp, String> {
    let Some(default_action) = p.default_action else {
        return Err("no defaultAction".into());
    };
    if !p.architectures.is_empty() && !p.arch_map.is_empty() {
        return Err("both architectures and archMap are set, use one".into());
    }
    let mut arches = p.architectures;
    if let Some(native) = native_seccomp_arch(ctx.arch)
        && let Some(m) = p.arch_map.iter().find(|m| m.architecture == native)
    {
        arches.push(m.architecture);
        arches.extend(m.sub_architectures.iter().copied());
    }
    let has_cap = |c: &String| ctx.caps.iter().any(|b| cap_key(b) == cap_key(c));
    let mut syscalls = Vec::new();
    for r in p.syscalls {
        let ex = &r.excludes;
        if ex.arches.iter().any(|a| a == ctx.arch) || ex.caps.iter().any(has_cap) {
            continue;
        }
        if let Some(k) = &ex.min_kernel
            && kernel_at_least(k, ctx.kernel)?
        {
            continue;
        }
        let inc = &r.includes;
        if (!inc.arches.is_empty() && !inc.arches.iter().any(|a| a == ctx.arch))
            || !inc.caps.iter().all(has_cap)
        {
            continue;
        }
        if let Some(k) = &inc.min_kernel
            && !kernel_at_least(k, ctx.kernel)?
        {
            continue;
        }
        let mut names = r.names;
        if !r.name.is_empty() {
            if !names.is_empty() {
                return Err("both name and names are set in a rule, use one".into());
            }
            names.push(r.name);
        }
        if names.is_empty() {
            return Err("a rule without syscall names".into());
        }
        let mut s = LinuxSyscall::default();
        s.set_names(names);
        s.set_action(r.action);
        s.set_errno_ret(r.errno_ret);
        s.set_args((!r.args.is_empty()).then_some(r.args));
        syscalls.push(s);
    }
    let mut out = LinuxSeccomp::default();
    out.set_default_action(default_action);
    out.set_default_errno_ret(p.default_errno_ret);
    out.set_architectures((!arches.is_empty()).then_some(arches));
    out.set_flags((!p.flags.is_empty()).then_some(p.flags));
    out.set_listener_path(p.listener_path);
    out.set_listener_metadata(p.listener_metadata);
    out.set_syscalls(Some(syscalls));
    Ok(out)
}

/// Parses and converts a profile document.
pub(crate) fn load(json: &str, ctx: &Context) -> Result<LinuxSeccomp, String> {
    let p: Profile = serde_json::from_str(json).map_err(|e| e.to_string())?;
    convert(p, ctx)
}

/// The runtime default profile for a container with these bounding caps.
pub(crate) fn default_profile(ctx: &Context) -> Result<LinuxSeccomp, SpecError> {
    load(DEFAULT_PROFILE, ctx).map_err(|e| {
        SpecError::InvalidSecurityProfile(format!("built-in default seccomp profile: {e}"))
    })
}

/// A Localhost profile: `path` is an absolute file path on the node.
pub(crate) fn localhost_profile(path: &Path, ctx: &Context) -> Result<LinuxSeccomp, SpecError> {
    let invalid = |reason: String| SpecError::SeccompProfileInvalid {
        path: path.into(),
        reason,
    };
    let bytes = match crate::rootfs::read_node_file(path, MAX_PROFILE_BYTES) {
        Ok(Some(b)) => b,
        Ok(None) => return Err(SpecError::SeccompProfileNotFound(path.into())),
        Err(SpecError::NotARegularFile { .. }) => {
            return Err(invalid("not a regular file".into()));
        }
        Err(SpecError::FileTooLarge { limit, .. }) => {
            return Err(invalid(format!("larger than {limit} bytes")));
        }
        Err(e) => return Err(e),
    };
    let text = String::from_utf8(bytes).map_err(|e| invalid(e.to_string()))?;
    load(&text, ctx).map_err(invalid)
}

/// The profile the container asks for, `None` when it asks for none.
/// `SecurityProfile` wins over the deprecated `seccomp_profile_path`
/// ("runtime/default", "docker/default", "unconfined", "localhost/<path>");
/// neither set means unconfined (the CRI default; kubelet always sends one).
fn requested(
    sc: Option<&LinuxContainerSecurityContext>,
) -> Result<Option<SecurityProfile>, SpecError> {
    let Some(sc) = sc else { return Ok(None) };
    if let Some(p) = &sc.seccomp {
        return Ok(Some(p.clone()));
    }
    #[allow(deprecated)]
    let path = sc.seccomp_profile_path.as_str();
    let profile = |t: ProfileType, r: &str| SecurityProfile {
        profile_type: t as i32,
        localhost_ref: r.into(),
    };
    Ok(match path {
        "" => None,
        "runtime/default" | "docker/default" => Some(profile(ProfileType::RuntimeDefault, "")),
        "unconfined" => Some(profile(ProfileType::Unconfined, "")),
        p => match p.strip_prefix("localhost/") {
            Some(r) => Some(profile(ProfileType::Localhost, r)),
            None => {
                return Err(SpecError::InvalidSecurityProfile(format!(
                    "unknown seccomp profile {p:?}"
                )));
            }
        },
    })
}

/// The seccomp filter of a container (none when privileged or unconfined).
pub(crate) fn seccomp(
    sc: Option<&LinuxContainerSecurityContext>,
    privileged: bool,
    bounding: &[String],
    host: &Host,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    let profile = requested(sc)?;
    if privileged {
        return Ok(None);
    }
    let Some(profile) = profile else {
        return Ok(None);
    };
    let ctx = Context {
        caps: bounding,
        arch: NATIVE_ARCH,
        kernel: host.kernel,
    };
    let typ = ProfileType::try_from(profile.profile_type).map_err(|_| {
        SpecError::InvalidSecurityProfile(format!(
            "unknown seccomp profile type {}",
            profile.profile_type
        ))
    })?;
    if typ != ProfileType::Localhost && !profile.localhost_ref.is_empty() {
        return Err(SpecError::InvalidSecurityProfile(
            "seccomp localhost_ref must only be set for a Localhost profile".into(),
        ));
    }
    match typ {
        ProfileType::Unconfined => Ok(None),
        ProfileType::RuntimeDefault => default_profile(&ctx).map(Some),
        ProfileType::Localhost => {
            let r = profile.localhost_ref.trim_start_matches("localhost/");
            if !r.starts_with('/') {
                return Err(SpecError::InvalidSecurityProfile(format!(
                    "seccomp localhost_ref {:?} is not an absolute path",
                    profile.localhost_ref
                )));
            }
            localhost_profile(Path::new(r), &ctx).map(Some)
        }
    }
}

#[cfg(test)]
pub(crate) mod eval {
    //! A tiny evaluator of OCI seccomp filters, for tests: the first rule
    //! whose name and argument conditions match decides.
    use super::*;
    use oci_spec::runtime::LinuxSeccompOperator as Op;

    pub(crate) fn action(
        p: &LinuxSeccomp,
        name: &str,
        args: [u64; 6],
    ) -> (LinuxSeccompAction, Option<u32>) {
        for r in p.syscalls().as_deref().unwrap_or(&[]) {
            if !r.names().iter().any(|n| n == name) {
                continue;
            }
            let ok = r.args().as_deref().unwrap_or(&[]).iter().all(|a| {
                let v = args[a.index()];
                match a.op() {
                    Op::ScmpCmpNe => v != a.value(),
                    Op::ScmpCmpLt => v < a.value(),
                    Op::ScmpCmpLe => v <= a.value(),
                    Op::ScmpCmpEq => v == a.value(),
                    Op::ScmpCmpGe => v >= a.value(),
                    Op::ScmpCmpGt => v > a.value(),
                    Op::ScmpCmpMaskedEq => v & a.value() == a.value_two().unwrap_or(0),
                }
            });
            if ok {
                return (r.action(), r.errno_ret());
            }
        }
        (p.default_action(), p.default_errno_ret())
    }
}

#[cfg(test)]
mod tests {
    use super::eval::action;
    use super::*;
    use crate::caps;
    use oci_spec::runtime::LinuxSeccompAction::{ScmpActAllow as ALLOW, ScmpActErrno as ERRNO};

    const CLONE_NEWUSER: u64 = 0x1000_0000;
    const CLONE_NEWNS: u64 = 0x0002_0000;
    const SIGCHLD: u64 = 17;

    fn default_caps() -> Vec<String> {
        caps::DEFAULT.iter().map(|c| caps::cap_name(*c)).collect()
    }

    /// A FIFO, a directory or a huge file where a Localhost profile
    /// should be: refused at once (a FIFO hung a berthd thread in open).
    #[test]
    fn localhost_profiles_that_are_not_small_regular_files_are_refused_at_once() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo.json");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let big = d.path().join("big.json");
        std::fs::write(&big, vec![b' '; MAX_PROFILE_BYTES + 1]).unwrap();
        let caps: Vec<String> = Vec::new();
        // (A hang here is the failure: the test runner kills it.)
        for (p, want) in [
            (fifo, "not a regular file"),
            (d.path().to_owned(), "not a regular file"),
            (big, "larger than"),
        ] {
            let e = localhost_profile(&p, &ctx(&caps, NATIVE_ARCH)).unwrap_err();
            assert!(e.to_string().contains(want), "{}: {e}", p.display());
            assert!(e.is_invalid_argument(), "{e}");
        }
        let missing = localhost_profile(&d.path().join("none.json"), &ctx(&caps, NATIVE_ARCH));
        assert!(matches!(missing, Err(SpecError::SeccompProfileNotFound(_))));
    }

    fn ctx<'a>(caps: &'a [String], arch: &'a str) -> Context<'a> {
        Context {
            caps,
            arch,
            kernel: (6, 1),
        }
    }

    #[test]
    fn runtime_default_allows_and_denies() {
        let caps = default_caps();
        let p = default_profile(&ctx(&caps, "amd64")).unwrap();
        assert_eq!(p.default_action(), ERRNO);
        assert_eq!(p.default_errno_ret(), Some(1));
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        let z = [0; 6];
        assert_eq!(action(&p, "read", z).0, ALLOW);
        assert_eq!(action(&p, "write", z).0, ALLOW);
        assert_eq!(action(&p, "arch_prctl", z).0, ALLOW);
        assert_eq!(
            action(&p, "chroot", z).0,
            ALLOW,
            "SYS_CHROOT is a default cap"
        );
        assert_eq!(action(&p, "ptrace", z).0, ALLOW, "kernel >= 4.8");
        // Denied with EPERM (the default).
        for s in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "kexec_load",
            "reboot",
            "init_module",
            "bpf",
            "open_by_handle_at",
        ] {
            assert_eq!(action(&p, s, z), (ERRNO, Some(1)), "{s}");
        }
        // clone: allowed for threads/forks, not with namespace flags.
        assert_eq!(action(&p, "clone", [SIGCHLD, 0, 0, 0, 0, 0]).0, ALLOW);
        assert_eq!(
            action(&p, "clone", [SIGCHLD | CLONE_NEWUSER, 0, 0, 0, 0, 0]).0,
            ERRNO
        );
        assert_eq!(action(&p, "clone", [CLONE_NEWNS, 0, 0, 0, 0, 0]).0, ERRNO);
        // clone3 gets ENOSYS so that libcs fall back to clone.
        assert_eq!(action(&p, "clone3", z), (ERRNO, Some(38)));
        // personality only with the known-safe personas.
        assert_eq!(action(&p, "personality", [0x8, 0, 0, 0, 0, 0]).0, ALLOW);
        assert_eq!(
            action(&p, "personality", [0x0040_0000, 0, 0, 0, 0, 0]).0,
            ERRNO
        );
    }

    #[test]
    fn runtime_default_follows_capabilities() {
        let mut caps = default_caps();
        caps.retain(|c| c != "CAP_SYS_CHROOT");
        caps.push("CAP_SYS_ADMIN".into());
        caps.push("CAP_SYS_TIME".into());
        let p = default_profile(&ctx(&caps, "amd64")).unwrap();
        let z = [0; 6];
        assert_eq!(action(&p, "mount", z).0, ALLOW);
        assert_eq!(action(&p, "unshare", z).0, ALLOW);
        assert_eq!(action(&p, "clone", [CLONE_NEWUSER, 0, 0, 0, 0, 0]).0, ALLOW);
        assert_eq!(action(&p, "clone3", z).0, ALLOW);
        assert_eq!(action(&p, "clock_settime", z).0, ALLOW);
        assert_eq!(action(&p, "chroot", z).0, ERRNO);
        assert_eq!(action(&p, "kexec_load", z).0, ERRNO);
    }

    #[test]
    fn runtime_default_per_arch() {
        let caps = default_caps();
        let p = default_profile(&ctx(&caps, "arm64")).unwrap();
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
        );
        let z = [0; 6];
        assert_eq!(action(&p, "set_tls", z).0, ALLOW);
        assert_eq!(action(&p, "arch_prctl", z).0, ERRNO);
        // s390x passes clone flags second.
        let p = default_profile(&ctx(&caps, "s390x")).unwrap();
        assert_eq!(action(&p, "clone", [0, CLONE_NEWUSER, 0, 0, 0, 0]).0, ERRNO);
        assert_eq!(action(&p, "clone", [CLONE_NEWUSER, 0, 0, 0, 0, 0]).0, ALLOW);
        // Old kernels: no ptrace.
        let old = Context {
            caps: &caps,
            arch: "amd64",
            kernel: (4, 4),
        };
        assert_eq!(
            action(&default_profile(&old).unwrap(), "ptrace", z).0,
            ERRNO
        );
    }

    #[test]
    fn docker_format_profile_converts() {
        let json = r#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
            ],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": [], "comment": "", "includes": {}, "excludes": {}},
                {"name": "getpid", "action": "SCMP_ACT_ALLOW"},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
                {"names": ["reboot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38, "excludes": {"caps": ["CAP_SYS_BOOT"]}},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]}
            ]
        }"#;
        let caps = default_caps();
        let p = load(json, &ctx(&caps, "amd64")).unwrap();
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        let names: Vec<Vec<String>> = p
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .map(|s| s.names().clone())
            .collect();
        assert_eq!(
            names,
            [
                vec!["read".to_string(), "write".into()],
                vec!["getpid".into()],
                vec!["arch_prctl".into()],
                vec!["reboot".into()],
                vec!["personality".into()],
            ]
        );
        assert_eq!(action(&p, "reboot", [0; 6]), (ERRNO, Some(38)));
        assert_eq!(action(&p, "personality", [8, 0, 0, 0, 0, 0]).0, ALLOW);
        assert_eq!(action(&p, "mount", [0; 6]).0, ERRNO);
        // The OCI output serializes as runtimes expect.
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["architectures"][0], "SCMP_ARCH_X86_64");
        assert!(v["syscalls"][0].get("args").is_none());
    }

    #[test]
    fn plain_oci_profile_converts() {
        let json = r#"{"defaultAction": "SCMP_ACT_LOG", "architectures": ["SCMP_ARCH_AARCH64"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#;
        let p = load(json, &ctx(&[], "amd64")).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActLog);
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchAarch64][..])
        );
        assert_eq!(
            p.flags().as_deref(),
            Some(&[LinuxSeccompFilterFlag::SeccompFilterFlagLog][..])
        );
        assert_eq!(action(&p, "kill", [0; 6]), (ERRNO, Some(1)));
    }

    #[test]
    fn bad_profiles() {
        let c = ctx(&[], "amd64");
        assert!(load("{", &c).is_err());
        assert!(load("{}", &c).is_err());
        assert!(load(r#"{"defaultAction": "SCMP_ACT_NOPE"}"#, &c).is_err());
        assert!(load(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#,
            &c
        )
        .is_err());
        assert!(load(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]}"#,
            &c
        )
        .is_err());
    }

    fn sc_with(p: SecurityProfile) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            seccomp: Some(p),
            ..Default::default()
        }
    }

    fn host() -> Host {
        crate::testutil::host()
    }

    #[test]
    fn localhost_files() {
        let caps = default_caps();
        let d = tempfile::tempdir().unwrap();
        let good = d.path().join("good.json");
        std::fs::write(
            &good,
            r#"{"defaultAction":"SCMP_ACT_ERRNO","archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]},{"architecture":"SCMP_ARCH_AARCH64","subArchitectures":[]}],"syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap();
        let lh = |r: &str| SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: r.into(),
        };
        let p = seccomp(
            Some(&sc_with(lh(good.to_str().unwrap()))),
            false,
            &caps,
            &host(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(action(&p, "read", [0; 6]).0, ALLOW);
        // The deprecated path form.
        #[allow(deprecated)]
        let old = LinuxContainerSecurityContext {
            seccomp_profile_path: format!("localhost/{}", good.display()),
            ..Default::default()
        };
        assert!(
            seccomp(Some(&old), false, &caps, &host())
                .unwrap()
                .is_some()
        );

        let missing = seccomp(
            Some(&sc_with(lh("/nonexistent/p.json"))),
            false,
            &caps,
            &host(),
        )
        .unwrap_err();
        assert!(
            matches!(missing, SpecError::SeccompProfileNotFound(_)),
            "{missing}"
        );
        assert!(missing.is_invalid_argument());
        let bad = d.path().join("bad.json");
        std::fs::write(&bad, "{not json").unwrap();
        let e = seccomp(
            Some(&sc_with(lh(bad.to_str().unwrap()))),
            false,
            &caps,
            &host(),
        )
        .unwrap_err();
        assert!(matches!(e, SpecError::SeccompProfileInvalid { .. }), "{e}");
        assert!(e.is_invalid_argument());
        let e = seccomp(Some(&sc_with(lh("relative.json"))), false, &caps, &host()).unwrap_err();
        assert!(e.is_invalid_argument());
    }

    #[test]
    fn profile_selection() {
        let caps = default_caps();
        let h = host();
        let rd = SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        };
        assert!(
            seccomp(Some(&sc_with(rd.clone())), false, &caps, &h)
                .unwrap()
                .is_some()
        );
        // Privileged: never.
        assert!(
            seccomp(Some(&sc_with(rd.clone())), true, &caps, &h)
                .unwrap()
                .is_none()
        );
        // Unset (no SecurityProfile, no path): unconfined, as the CRI says.
        assert!(
            seccomp(Some(&Default::default()), false, &caps, &h)
                .unwrap()
                .is_none()
        );
        assert!(seccomp(None, false, &caps, &h).unwrap().is_none());
        let un = SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        };
        assert!(
            seccomp(Some(&sc_with(un)), false, &caps, &h)
                .unwrap()
                .is_none()
        );
        // Deprecated path strings.
        #[allow(deprecated)]
        let mut old = LinuxContainerSecurityContext {
            seccomp_profile_path: "runtime/default".into(),
            ..Default::default()
        };
        assert!(seccomp(Some(&old), false, &caps, &h).unwrap().is_some());
        #[allow(deprecated)]
        {
            old.seccomp_profile_path = "docker/default".into();
        }
        assert!(seccomp(Some(&old), false, &caps, &h).unwrap().is_some());
        #[allow(deprecated)]
        {
            old.seccomp_profile_path = "unconfined".into();
        }
        assert!(seccomp(Some(&old), false, &caps, &h).unwrap().is_none());
        #[allow(deprecated)]
        {
            old.seccomp_profile_path = "bogus".into();
        }
        assert!(
            seccomp(Some(&old), false, &caps, &h)
                .unwrap_err()
                .is_invalid_argument()
        );
        // A localhost_ref on a non-Localhost profile is invalid.
        let e = seccomp(
            Some(&sc_with(SecurityProfile {
                localhost_ref: "/x".into(),
                ..rd
            })),
            false,
            &caps,
            &h,
        )
        .unwrap_err();
        assert!(e.is_invalid_argument());
    }
}
