//! Capabilities: containerd's default set, CRI add/drop with "ALL", all of
//! berthd's own capabilities for privileged containers.

use std::collections::HashSet;

use k8s_cri::v1::Capability as CriCapability;
use oci_spec::runtime::{Capability, LinuxCapabilities};

use crate::error::SpecError;

/// Capabilities by bit number (linux/capability.h), with their names.
const TABLE: &[(u8, &str, Capability)] = &[
    (0, "CHOWN", Capability::Chown),
    (1, "DAC_OVERRIDE", Capability::DacOverride),
    (2, "DAC_READ_SEARCH", Capability::DacReadSearch),
    (3, "FOWNER", Capability::Fowner),
    (4, "FSETID", Capability::Fsetid),
    (5, "KILL", Capability::Kill),
    (6, "SETGID", Capability::Setgid),
    (7, "SETUID", Capability::Setuid),
    (8, "SETPCAP", Capability::Setpcap),
    (9, "LINUX_IMMUTABLE", Capability::LinuxImmutable),
    (10, "NET_BIND_SERVICE", Capability::NetBindService),
    (11, "NET_BROADCAST", Capability::NetBroadcast),
    (12, "NET_ADMIN", Capability::NetAdmin),
    (13, "NET_RAW", Capability::NetRaw),
    (14, "IPC_LOCK", Capability::IpcLock),
    (15, "IPC_OWNER", Capability::IpcOwner),
    (16, "SYS_MODULE", Capability::SysModule),
    (17, "SYS_RAWIO", Capability::SysRawio),
    (18, "SYS_CHROOT", Capability::SysChroot),
    (19, "SYS_PTRACE", Capability::SysPtrace),
    (20, "SYS_PACCT", Capability::SysPacct),
    (21, "SYS_ADMIN", Capability::SysAdmin),
    (22, "SYS_BOOT", Capability::SysBoot),
    (23, "SYS_NICE", Capability::SysNice),
    (24, "SYS_RESOURCE", Capability::SysResource),
    (25, "SYS_TIME", Capability::SysTime),
    (26, "SYS_TTY_CONFIG", Capability::SysTtyConfig),
    (27, "MKNOD", Capability::Mknod),
    (28, "LEASE", Capability::Lease),
    (29, "AUDIT_WRITE", Capability::AuditWrite),
    (30, "AUDIT_CONTROL", Capability::AuditControl),
    (31, "SETFCAP", Capability::Setfcap),
    (32, "MAC_OVERRIDE", Capability::MacOverride),
    (33, "MAC_ADMIN", Capability::MacAdmin),
    (34, "SYSLOG", Capability::Syslog),
    (35, "WAKE_ALARM", Capability::WakeAlarm),
    (36, "BLOCK_SUSPEND", Capability::BlockSuspend),
    (37, "AUDIT_READ", Capability::AuditRead),
    (38, "PERFMON", Capability::Perfmon),
    (39, "BPF", Capability::Bpf),
    (40, "CHECKPOINT_RESTORE", Capability::CheckpointRestore),
];

/// containerd's default capabilities for CRI containers.
pub const DEFAULT: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability this crate knows, in bit order.
pub fn all_known() -> Vec<Capability> {
    TABLE.iter().map(|(_, _, c)| *c).collect()
}

/// "CAP_SYS_ADMIN" for [`Capability::SysAdmin`].
pub fn cap_name(c: Capability) -> String {
    let name = TABLE
        .iter()
        .find(|(_, _, k)| *k == c)
        .map(|(_, n, _)| *n)
        .unwrap_or("UNKNOWN");
    format!("CAP_{name}")
}

/// Parses a capability name with or without the CAP_ prefix, any case.
pub fn parse(name: &str) -> Result<Capability, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    TABLE
        .iter()
        .find(|(_, n, _)| *n == bare)
        .map(|(_, _, c)| *c)
        .ok_or_else(|| SpecError::UnknownCapability(name.into()))
}

/// Capabilities from a /proc/<pid>/status CapEff hex mask.
fn from_mask(mask: u64) -> Vec<Capability> {
    TABLE
        .iter()
        .filter(|(bit, _, _)| mask & (1u64 << bit) != 0)
        .map(|(_, _, c)| *c)
        .collect()
}

/// The effective capabilities of this process (containerd's cap.Current()).
pub(crate) fn current() -> Option<Vec<Capability>> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok().map(from_mask)
}

/// The resolved capability sets of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caps {
    /// Bounding = effective = permitted.
    pub main: Vec<Capability>,
    pub ambient: Vec<Capability>,
}

impl Caps {
    /// Names of the bounding set, as seccomp profiles name them.
    pub fn bounding_names(&self) -> Vec<String> {
        self.main.iter().map(|c| cap_name(*c)).collect()
    }

    pub fn to_oci(&self) -> LinuxCapabilities {
        let set = |v: &[Capability]| v.iter().copied().collect::<HashSet<_>>();
        let mut lc = LinuxCapabilities::default();
        lc.set_bounding(Some(set(&self.main)));
        lc.set_effective(Some(set(&self.main)));
        lc.set_permitted(Some(set(&self.main)));
        if self.ambient.is_empty() {
            lc.set_inheritable(None);
            lc.set_ambient(None);
        } else {
            // Ambient capabilities must be inheritable (and permitted).
            lc.set_inheritable(Some(set(&self.ambient)));
            lc.set_ambient(Some(set(&self.ambient)));
        }
        lc
    }
}

fn is_all(s: &str) -> bool {
    s.trim().eq_ignore_ascii_case("ALL")
}

/// The capabilities of a container. Privileged: `all` (berthd's own), add/drop
/// ignored. Otherwise containerd's defaults, then "ALL" in add (→ `all`), "ALL"
/// in drop (→ none), then the single adds, then the single drops. Ambient
/// adds go to every set. No ambient capabilities otherwise (containerd clears
/// them).
pub(crate) fn resolve(
    cri: Option<&CriCapability>,
    privileged: bool,
    all: &[Capability],
) -> Result<Caps, SpecError> {
    if privileged {
        return Ok(Caps {
            main: all.to_vec(),
            ambient: Vec::new(),
        });
    }
    let mut main = DEFAULT.to_vec();
    let Some(cri) = cri else {
        return Ok(Caps {
            main,
            ambient: Vec::new(),
        });
    };
    if cri.add_capabilities.iter().any(|c| is_all(c)) {
        main = all.to_vec();
    }
    if cri.drop_capabilities.iter().any(|c| is_all(c)) {
        main.clear();
    }
    let mut ambient = Vec::new();
    for name in &cri.add_capabilities {
        if is_all(name) {
            continue;
        }
        let c = parse(name)?;
        if !main.contains(&c) {
            main.push(c);
        }
    }
    for name in &cri.drop_capabilities {
        if is_all(name) {
            continue;
        }
        let c = parse(name)?;
        main.retain(|x| *x != c);
    }
    for name in &cri.add_ambient_capabilities {
        let c = parse(name)?;
        if !main.contains(&c) {
            main.push(c);
        }
        if !ambient.contains(&c) {
            ambient.push(c);
        }
    }
    Ok(Caps { main, ambient })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cri(add: &[&str], drop: &[&str]) -> CriCapability {
        CriCapability {
            add_capabilities: add.iter().map(|s| s.to_string()).collect(),
            drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
            add_ambient_capabilities: vec![],
        }
    }

    fn names(c: &Caps) -> Vec<String> {
        let mut v = c.bounding_names();
        v.sort();
        v
    }

    #[test]
    fn default_set_is_containerds() {
        let c = resolve(None, false, &all_known()).unwrap();
        assert_eq!(
            c.bounding_names(),
            [
                "CAP_CHOWN",
                "CAP_DAC_OVERRIDE",
                "CAP_FSETID",
                "CAP_FOWNER",
                "CAP_MKNOD",
                "CAP_NET_RAW",
                "CAP_SETGID",
                "CAP_SETUID",
                "CAP_SETFCAP",
                "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE",
                "CAP_SYS_CHROOT",
                "CAP_KILL",
                "CAP_AUDIT_WRITE"
            ]
        );
        let oci = c.to_oci();
        assert_eq!(oci.bounding().as_ref().unwrap().len(), 14);
        assert_eq!(oci.effective(), oci.bounding());
        assert_eq!(oci.permitted(), oci.bounding());
        assert!(oci.ambient().is_none());
        assert!(oci.inheritable().is_none());
    }

    #[test]
    fn add_and_drop_with_or_without_prefix() {
        let c = resolve(
            Some(&cri(
                &["NET_ADMIN", "cap_sys_time"],
                &["CAP_NET_RAW", "mknod"],
            )),
            false,
            &all_known(),
        )
        .unwrap();
        let n = names(&c);
        assert!(n.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(n.contains(&"CAP_SYS_TIME".to_string()));
        assert!(!n.contains(&"CAP_NET_RAW".to_string()));
        assert!(!n.contains(&"CAP_MKNOD".to_string()));
        assert_eq!(n.len(), 14);
    }

    #[test]
    fn all_semantics() {
        let all = all_known();
        // drop ALL, add one: only that one.
        let c = resolve(Some(&cri(&["NET_BIND_SERVICE"], &["ALL"])), false, &all).unwrap();
        assert_eq!(names(&c), ["CAP_NET_BIND_SERVICE"]);
        // add ALL, drop one: everything else.
        let c = resolve(Some(&cri(&["all"], &["CHOWN"])), false, &all).unwrap();
        assert_eq!(c.main.len(), all.len() - 1);
        assert!(!c.main.contains(&Capability::Chown));
        assert!(c.main.contains(&Capability::SysAdmin));
        // add ALL and drop ALL: drop wins (applied after).
        let c = resolve(Some(&cri(&["ALL"], &["ALL"])), false, &all).unwrap();
        assert!(c.main.is_empty());
        // ALL means berthd's own capabilities.
        let mine = [Capability::Chown, Capability::Kill];
        let c = resolve(Some(&cri(&["ALL"], &[])), false, &mine).unwrap();
        assert!(c.main.contains(&Capability::Kill));
        assert!(!c.main.contains(&Capability::SysAdmin));
    }

    #[test]
    fn privileged_gets_everything_and_ignores_drops() {
        let all = all_known();
        let c = resolve(Some(&cri(&[], &["ALL"])), true, &all).unwrap();
        assert_eq!(c.main, all);
        assert!(c.main.contains(&Capability::SysAdmin));
    }

    #[test]
    fn ambient_capabilities() {
        let mut x = cri(&[], &[]);
        x.add_ambient_capabilities = vec!["NET_ADMIN".into()];
        let c = resolve(Some(&x), false, &all_known()).unwrap();
        assert_eq!(c.ambient, [Capability::NetAdmin]);
        assert!(c.main.contains(&Capability::NetAdmin));
        let oci = c.to_oci();
        assert!(
            oci.ambient()
                .as_ref()
                .unwrap()
                .contains(&Capability::NetAdmin)
        );
        assert!(
            oci.inheritable()
                .as_ref()
                .unwrap()
                .contains(&Capability::NetAdmin)
        );
    }

    #[test]
    fn unknown_capability_is_invalid_argument() {
        let e = resolve(Some(&cri(&["FLY"], &[])), false, &all_known()).unwrap_err();
        assert!(matches!(&e, SpecError::UnknownCapability(n) if n == "FLY"));
        assert!(e.is_invalid_argument());
        assert!(resolve(Some(&cri(&[], &["CAP_"])), false, &all_known()).is_err());
    }

    #[test]
    fn mask_parsing() {
        assert_eq!(from_mask(0x1), [Capability::Chown]);
        assert_eq!(from_mask(0x1ff_ffff_ffff).len(), 41);
        assert_eq!(from_mask(1 << 21), [Capability::SysAdmin]);
        assert!(current().is_some());
    }
}
